"""The ops with a hand-written backward (gan.fused) and the one-pass attribute cross-entropy are the functions they
replace: values and gradients against autograd's, in float64, and the dtypes autocast gives them."""
import torch
import torch.nn.functional as F

from gan.attributes import masked_attribute_loss
from gan.fused import CosineMatrix, GRUSequence


def test_gru_sequence_is_nn_gru_forwards_and_backwards():
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True).double()
    x, h0 = torch.randn(2, 6, 3, dtype=torch.double), torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    gi = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    ours = GRUSequence.apply(gi, h0, gru.weight_hh_l0, gru.bias_hh_l0)
    reference, _ = gru(x, h0.unsqueeze(0))
    torch.testing.assert_close(ours, reference)
    params = [h0, *gru.parameters()]
    for a, b in zip(torch.autograd.grad(ours.sin().sum(), params), torch.autograd.grad(reference.sin().sum(), params)):
        torch.testing.assert_close(a, b)
    inputs = (torch.randn(2, 5, 12, dtype=torch.double, requires_grad=True), h0.detach().requires_grad_(),
              torch.randn(12, 4, dtype=torch.double, requires_grad=True),
              torch.randn(12, dtype=torch.double, requires_grad=True))
    assert torch.autograd.gradcheck(GRUSequence.apply, inputs)


def test_cosine_matrix_is_normalised_dot_products_and_keeps_autocasts_dtypes():
    torch.manual_seed(0)
    h = torch.randn(5, 7, dtype=torch.double, requires_grad=True)
    phi = torch.randn(3, 7, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(CosineMatrix.apply(h, phi), F.normalize(h, dim=1) @ F.normalize(phi, dim=1).T)
    assert torch.autograd.gradcheck(CosineMatrix.apply, (h, phi))
    h16 = torch.randn(5, 7, dtype=torch.bfloat16, requires_grad=True)
    phi32 = torch.randn(3, 7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = CosineMatrix.apply(h16, phi32)
        assert cos.dtype == torch.float32                   # the contrastive logits stay fp32
        cos.sum().backward()
    assert h16.grad.dtype == torch.bfloat16 and phi32.grad.dtype == torch.float32
    only_h = torch.randn(5, 7, requires_grad=True)
    CosineMatrix.apply(only_h, phi32.detach()).sum().backward()   # a frozen φ (G's phase) gets no gradient made
    assert only_h.grad is not None


def test_one_pass_attribute_cross_entropy_is_the_mean_of_each_attributes_masked_cross_entropy():
    torch.manual_seed(0)
    classes = [4, 2, 3]
    logits = torch.randn(6, sum(classes), dtype=torch.double, requires_grad=True)
    labels = torch.tensor([[0, 1, 2], [3, -1, 0], [1, 0, -1], [-1, -1, 1], [2, 1, -1], [0, 0, 2]])
    labels[:, 1] = torch.where(torch.arange(6) < 3, labels[:, 1], torch.tensor(-1))
    parts = logits.split(classes, dim=1)
    per_attribute = [F.cross_entropy(lg[labels[:, a] >= 0], labels[labels[:, a] >= 0, a]) for a, lg in enumerate(parts)]
    reference = torch.stack(per_attribute).mean()
    ours = masked_attribute_loss(logits, labels, classes)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(reference, logits)[0])
    # an attribute with no labels at all drops out of the mean; nothing labelled gives 0
    none_b = labels.clone()
    none_b[:, 1] = -1
    reference = torch.stack([per_attribute[0], per_attribute[2]]).mean()
    torch.testing.assert_close(masked_attribute_loss(logits, none_b, classes), reference)
    assert float(masked_attribute_loss(logits, torch.full_like(labels, -1), classes)) == 0.0
    assert torch.isfinite(torch.autograd.grad(masked_attribute_loss(logits, labels, classes), logits)[0]).all()
