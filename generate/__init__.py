"""ReelGAN generate."""
