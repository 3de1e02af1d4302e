"""Run by test_train under `accelerate launch` with two CPU processes: train, then report each rank's weights.

Each batch of 32 runs as chunks of 11, 11 and 10: the ranks synchronise their gradients on the last chunk only.
"""

import hashlib
import json
import sys
from pathlib import Path

from vsgm.options import defaults
from vsgm.train import Trainer

data, out = sys.argv[1], Path(sys.argv[2])
opts = defaults()
opts.update(model_channels=16, num_res_blocks=1, channel_mult=[1, 2], attention_resolutions=[2], num_head_channels=16,
            n_epochs=1, warmup=0, batch_size=32, micro_batch=12, sample_and_save_freq=100, no_wandb=True)
trainer = Trainer(opts, data, out / "model")
trainer.run(resume=False)
weights = trainer.acc.unwrap_model(trainer.model).state_dict()
digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
rank = trainer.acc.process_index
(out / f"rank{rank}.json").write_text(json.dumps({
    "checksum": digest, "steps": trainer.step, "world": trainer.acc.num_processes,
    "distributed": trainer.acc.distributed_type.value}))
