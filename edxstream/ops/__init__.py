"""Operations: the local stack, the pipeline runner, replay, demo, the generator, inspect."""
