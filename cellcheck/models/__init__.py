"""The networks we train and the masked losses they train with (torch, MONAI).

Both the trainer and the memory model (`cellcheck.memory.vram`, which traces one real training step
under FakeTensorMode) import these: the model's numbers are the trainer's network and loss.
"""
