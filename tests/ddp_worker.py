"""Run by test_train under `accelerate launch` (two CPU processes, or one): train, then report each rank's
weights and the learning rate of every step.

argv: data, out dir, then optionally batch size per process, micro-batch, epochs, warm-up epochs (default
32 12 1 0: each batch of 32 runs as chunks of 11, 11 and 10, and the ranks synchronise their gradients on
the last chunk only).
"""

import hashlib
import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from vsgm.options import defaults
from vsgm.train import Trainer


class LoggingTrainer(Trainer):
    """Records the learning rate each optimizer step uses."""

    lrs: list[float] = []

    def train_step(self, x, y):
        self.lrs.append(self.opt.param_groups[0]["lr"])
        return super().train_step(x, y)


data, out = sys.argv[1], Path(sys.argv[2])
batch, micro, epochs, warmup = [int(a) for a in sys.argv[3:7]] + [32, 12, 1, 0][len(sys.argv[3:7]):]
opts = defaults()
opts.update(model_channels=16, num_res_blocks=1, channel_mult=[1, 2], attention_resolutions=[2], num_head_channels=16,
            n_epochs=epochs, warmup=warmup, batch_size=batch, micro_batch=micro, sample_and_save_freq=100,
            no_wandb=True)
trainer = LoggingTrainer(opts, data, out / "model")
trainer.run(resume=False)
weights = {k: v.contiguous() for k, v in trainer.net.state_dict().items()}
digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
rank = trainer.acc.process_index
save_file(weights, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps({
    "checksum": digest, "steps": trainer.step, "world": trainer.acc.num_processes, "lrs": trainer.lrs,
    "distributed": trainer.acc.distributed_type.value}))
