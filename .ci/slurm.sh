#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on 127.0.0.1 for testing the workflow's cluster profiles
# (Debian bookworm: slurm-wlm 22.05 + munge; run as root; no systemd needed: the daemons are
# started directly and stopped by pid).
#
# usage: bash .ci/slurm.sh install|start|stop|status
#   install  apt-get install slurm-wlm and munge (about 20 s)
#   start    write /etc/slurm/slurm.conf for this host, start munged, slurmctld, slurmd; wait for "idle"
#            (a no-op when the cluster already answers)
#   stop     stop the daemons started by `start` (by their pid files)
#   status   exit 0 when the partition answers `sinfo`
# env: SLURM_PART (partition name, default debug)
set -euo pipefail
SLURM_PART=${SLURM_PART:-debug}

install() {
  if command -v sinfo >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  apt-get install -y slurm-wlm munge >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y slurm-wlm munge >/dev/null; }
}

status() {
  command -v sinfo >/dev/null && sinfo -h -p "$SLURM_PART" -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

start() {
  if status; then
    sinfo
    return 0
  fi
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(free -m | awk '/^Mem:/{print $2}') * 85 / 100 ))   # a bit under physical
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm /run/munge
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=localcluster
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# keep finished jobs visible to 'squeue --states=all' (the snakemake slurm plugin's
# squeue status mode needs MinJobAge >= 3 * init-seconds-before-status-checks)
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} Sockets=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem} State=UNKNOWN
PartitionName=${SLURM_PART} Nodes=${host} Default=YES MaxTime=INFINITE DefMemPerCPU=1000 State=UP
CONF
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
  fi
  chown munge:munge /run/munge
  chmod 755 /run/munge
  if [ ! -s /run/munge/munged.pid ] || ! kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
    runuser -u munge -- /usr/sbin/munged        # daemonizes; pid in /run/munge/munged.pid
  fi
  /usr/sbin/slurmctld -c                        # -c: start with a clean state (no old jobs)
  /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if status; then
      sinfo
      return 0
    fi
    sleep 0.5
  done
  echo "slurm did not come up" >&2
  tail -n 30 /var/log/slurm/*.log >&2
  return 1
}

stop() {
  local f pid
  for f in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
      done
      if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"
      fi
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *)
    echo "usage: bash .ci/slurm.sh install|start|stop|status" >&2
    exit 2
    ;;
esac
