#!/usr/bin/env bash
# Job status for snakemake-executor-plugin-cluster-generic: prints running, success or failed
# for the SLURM job id given (as printed by `sbatch --parsable`: ID or ID;CLUSTER).
# squeue knows finished jobs for MinJobAge seconds; sacct (with slurmdbd) is asked after that.
set -uo pipefail
jobid="${1%%;*}"
state=$(squeue --noheader --states=all --jobs "$jobid" --format=%T 2>/dev/null | head -n 1)
if [ -z "$state" ] && command -v sacct >/dev/null 2>&1; then
  state=$(sacct --noheader --allocations --parsable2 --jobs "$jobid" --format=State 2>/dev/null | head -n 1)
  state=${state%% *}   # "CANCELLED by 0" -> CANCELLED
fi
case "$state" in
  COMPLETED) echo success ;;
  PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SIGNALING | STAGE_OUT | STOPPED) echo running ;;
  *) echo failed ;;   # FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, unknown
esac
