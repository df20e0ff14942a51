"""Run under torchrun (2 gloo processes): one DDP backward through InsplugRunner's wrapper.

Each rank computes the loss on its own training image (rank r takes image r) and back-propagates
through the model wrapped by :class:`insplug.mmdet.runner.InsplugRunner` (gloo, device_ids=None).
Rank 0 then recomputes, in one process without DDP, the gradient of each image separately and
saves both: DDP must have averaged them. Usage (see test_distributed.py):

    torchrun --nproc_per_node 2 dist_grad_worker.py CONFIG DATA_ROOT OUT.pt
"""
import sys

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from insplug.mmdet.runner import InsplugRunner


def loss_and_backward(model, module, batch):
    torch.manual_seed(0)  # the RoI samplers draw random numbers: same draws on both sides
    data = module.data_preprocessor(batch, True)
    loss, _ = module.parse_losses(model(**data, mode='loss'))
    loss.backward()


def main(config, root, out):
    cfg = Config.fromfile(config)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers, cfg[key].persistent_workers = 0, False
        cfg[key].dataset.data_root = root
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = root + 'val/annotations.json'
    cfg.work_dir = out + '.work'
    cfg.launcher = 'pytorch'
    cfg.randomness = dict(seed=0)
    runner = InsplugRunner.from_cfg(cfg)
    rank = torch.distributed.get_rank()
    dataset = runner.build_dataloader(cfg.train_dataloader).dataset
    batches = [pseudo_collate([dataset[i]]) for i in range(2)]
    ddp, module = runner.model, runner.model.module
    assert type(ddp).__name__ == 'MMDistributedDataParallel' and ddp.device_ids is None
    loss_and_backward(ddp, module, batches[rank])
    synced = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    if rank == 0:
        per_image = []
        for batch in batches:
            module.zero_grad()
            loss_and_backward(module, module, batch)
            per_image.append({n: p.grad.clone() for n, p in module.named_parameters()
                              if p.grad is not None})
        torch.save(dict(synced=synced, per_image=per_image,
                        backend=torch.distributed.get_backend()), out)
    torch.distributed.barrier()


if __name__ == '__main__':
    main(*sys.argv[1:4])
