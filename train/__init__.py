"""ReelGAN train."""
