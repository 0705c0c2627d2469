"""Placeholder checkpointer (replaced by the Orbax implementation)."""


class Checkpointer:
    def __init__(self, directory, config, every=1, keep=2):
        pass

    def check(self, resume, new_run=False):
        pass

    def restore(self, prep):
        return None

    def save(self, state):
        pass

    def wait(self):
        pass
