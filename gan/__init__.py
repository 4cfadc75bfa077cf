"""ReelGAN gan."""
