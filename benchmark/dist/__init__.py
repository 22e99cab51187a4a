"""Layer 2: leaving the single process — joining a torch.distributed world and the torchrun launcher."""
