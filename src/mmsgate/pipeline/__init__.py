"""The pipeline: the worker loop and one module per step (each `async def step(job, deps)`)."""
