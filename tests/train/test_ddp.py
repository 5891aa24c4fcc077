"""DDP on 2 CPU processes (gloo on 127.0.0.1): the loss over all-gathered features and the
averaged gradients equal a single process on the same global batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import free_port

GLOBAL_BATCH = 6


def _model():
    from transformers import BertConfig, BertModel

    from clamp.model.clamp_model import ClampModel
    from clamp.model.config import ClampConfig, music_preset

    torch.manual_seed(0)
    text = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
    return ClampModel(ClampConfig(music=music_preset("tiny", dropout=0.0), projection_dim=16), text)


def _batch():
    g = torch.Generator().manual_seed(1)
    music = torch.randint(1, 96, (GLOBAL_BATCH, 5, 64), generator=g)
    ids = torch.randint(1, 50, (GLOBAL_BATCH, 7), generator=g)
    return music, ids, torch.ones_like(ids)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        music, ids, mask = _batch()
        part = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
        out = ddp(music[part], ids[part], mask[part])
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save(
            {"loss": out.loss.detach(), "logits": out.logits.detach(), "grads": grads},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gathered_loss_and_grads_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    model = _model()
    music, ids, mask = _batch()
    single = model(music, ids, mask)
    single.loss.backward()
    for rank in range(2):
        # files written by our own test processes a moment ago
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["logits"].shape == (GLOBAL_BATCH, GLOBAL_BATCH)  # the global batch, gathered
        torch.testing.assert_close(result["logits"], single.logits.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(result["loss"], single.loss.detach(), atol=1e-6, rtol=1e-5)
        single_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert set(result["grads"]) == set(single_grads)
        for name, grad in single_grads.items():
            torch.testing.assert_close(result["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)
