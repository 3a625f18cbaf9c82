"""What every 2-process Gloo DDP test needs: a free port and the environment torchrun would set."""

import os
import socket

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_rank(rank: int, world: int, port: int) -> None:
    """Set what ``torchrun`` sets for process ``rank`` of ``world`` (and one thread, no progress bars)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TQDM_DISABLE="1",
    )
    torch.set_num_threads(1)
