"""The preference head's own hit rate: its draws and its mode against each user's favourite, and how often the
clips show what the head told G (evaluation.personalisation.head)."""
import numpy as np
import torch
from torch import nn

from gan.generator import PreferenceHead, VideoGenerator
from evaluation.personalisation.head import head_choices, head_hits


class HeadOnly(nn.Module):
    """The part of a VideoGenerator that picks attributes: a PreferenceHead and the seed's uniforms."""

    attributes_for = VideoGenerator.attributes_for

    def __init__(self, classes):
        super().__init__()
        self.attribute_classes, self.z_dim = list(classes), 4 + len(classes)
        self.preference = PreferenceHead(2, classes)


def test_head_draws_and_modes_are_scored_against_the_favourites_in_the_classifier_order():
    g = HeadOnly([2, 3])                                  # category (2 values), colour (3)
    with torch.no_grad():   # condition e0 → "a" and "red" almost surely; e1 → "b" at 0.57 (its mode) and "green"
        g.preference.linear.weight.copy_(torch.tensor([[9., 0], [0, 0.3], [0, 0], [0, 9.], [9., 0]]))
        g.preference.linear.bias.zero_()
    gen_vocab = {"category": ["a", "b"], "colour": ["blue", "green", "red"]}   # sorted, as G's datamodule has it
    vocab = {"category": ["b", "a"], "colour": ["red", "green", "blue"]}       # the classifier's (world) order
    k = 400
    conds = torch.tensor([[1., 0], [0, 1.]]).repeat_interleave(k, 0)
    choices = head_choices(g, conds, list(range(2 * k)), gen_vocab, vocab)
    # both users' favourites: category "a" (classifier index 1), colour red (classifier index 0)
    cat = head_hits(choices, [{1}, {1}], "category", k, truncation=1.0)
    assert cat["mode"] == 0.5                             # user 0's mode is "a", user 1's is "b"
    p_a = 1 / (1 + np.exp(0.3))                           # user 1 draws "a" with p 0.43
    assert abs(cat["draw"] - (1.0 + p_a) / 2) < 0.04 and cat["draw_se"] > 0
    col = head_hits(choices, [{0}, {0}], "colour", k, truncation=0.7,
                    read=np.stack([np.zeros(k, int), np.ones(k, int)]))
    assert col["mode"] == 0.5 and col["told"] == 0.5      # below truncation 1 G is told the mode
    assert col["rendered"] == 1.0                          # user 0 told red (0) read 0; user 1 told green (1) read 1
    assert head_choices(g, conds, list(range(2 * k)), {"category": ["a", "b"]}, vocab) is None
