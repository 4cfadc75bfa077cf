"""ReelGAN evaluation."""
