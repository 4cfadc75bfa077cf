"""ReelGAN data layer: dataset contract, video IO, synthetic try-on world, preference embeddings."""
