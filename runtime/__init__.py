"""How seal's processes use the machine: threads on shared CPU cores, the float type they compute in,
and which GPUs they may use. Teacher, student and placement all read this policy from here, so none of
them imports another's internals for it."""
