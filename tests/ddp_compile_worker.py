"""Run by test_train under `accelerate launch` with two CPU processes: does accelerate's no_sync reach DDP
through a torch.compile wrapper (compiled after prepare, as vsgm train --compile does)?

Each rank backpropagates its own input twice, first under no_sync, and reports its gradients after each.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

out = Path(sys.argv[1])
acc = Accelerator()
torch.manual_seed(0)
model = torch.compile(acc.prepare(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))),
                      backend="eager")  # dynamo's graph capture and DDP handling, without code generation
x = torch.full((3, 4), float(acc.process_index + 1))
with acc.no_sync(model):
    acc.backward(model(x).sum())
local = [p.grad.clone() for p in model.parameters()]
acc.backward(model(x).sum())
synced = [p.grad.clone() for p in model.parameters()]
(out / f"rank{acc.process_index}.json").write_text(json.dumps({
    "compiled": type(model).__name__, "local": [g.flatten().tolist() for g in local],
    "synced": [g.flatten().tolist() for g in synced]}))
