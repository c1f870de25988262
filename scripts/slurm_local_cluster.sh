#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the test suite (and for trying the slurm profile
# on a workstation). Debian's SLURM packages, munge, no cgroups, no accounting; four fake GPUs (GRES backed
# by /dev/null clones) so GPU rules can be scheduled without a GPU: a 2-GPU training job and a 1-GPU
# pseudo-label job fit side by side. Jobs see CUDA_VISIBLE_DEVICES but no CUDA device, so they run on CPU.
#
#   scripts/slurm_local_cluster.sh start   install if needed, start munged/slurmctld/slurmd, wait until idle
#   scripts/slurm_local_cluster.sh stop    stop only the daemons this script started (pids in $SLURM_DIR)
#   scripts/slurm_local_cluster.sh status
#
# Needs root (apt, /etc/slurm, mknod). SLURM_DIR defaults to /tmp/mutdet-slurm.
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/mutdet-slurm}
CONF=/etc/slurm/slurm.conf

install_packages() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
}

write_config() {
    mkdir -p "$SLURM_DIR"/{state,spool,log} /etc/slurm
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    for i in 0 1 2 3; do
        [ -e "$SLURM_DIR/fakegpu$i" ] || mknod "$SLURM_DIR/fakegpu$i" c 1 3
    done
    cat > "$CONF" <<CONF
ClusterName=mutdet-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MinJobAge=600
ReturnToService=2
GresTypes=gpu
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:fake:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    cat > /etc/slurm/gres.conf <<GRES
NodeName=localhost Name=gpu Type=fake File=$SLURM_DIR/fakegpu[0-3]
GRES
}

start() {
    install_packages
    write_config
    if ! munge -n >/dev/null 2>&1; then
        install -d -o munge -g munge /run/munge
        runuser -u munge -- /usr/sbin/munged
        echo started > "$SLURM_DIR/munged.ours"
    fi
    [ -f "$SLURM_DIR/slurmctld.pid" ] && kill -0 "$(cat "$SLURM_DIR/slurmctld.pid")" 2>/dev/null || /usr/sbin/slurmctld
    [ -f "$SLURM_DIR/slurmd.pid" ] && kill -0 "$(cat "$SLURM_DIR/slurmd.pid")" 2>/dev/null || /usr/sbin/slurmd -N localhost
    for _ in $(seq 1 150); do
        if sinfo -h -N -o %T 2>/dev/null | grep -q idle; then
            echo "SLURM cluster up: $(sinfo -h -o '%P %a %D %t' | head -1)"
            return 0
        fi
        # a node left drained by an earlier run: bring it back
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        sleep 0.2
    done
    echo "SLURM did not become idle; logs in $SLURM_DIR/log" >&2
    return 1
}

stop() {
    for d in slurmd slurmctld; do
        if [ -f "$SLURM_DIR/$d.pid" ]; then
            kill "$(cat "$SLURM_DIR/$d.pid")" 2>/dev/null || true
            rm -f "$SLURM_DIR/$d.pid"
        fi
    done
    if [ -f "$SLURM_DIR/munged.ours" ]; then
        pkill -u munge -x munged 2>/dev/null || true
        rm -f "$SLURM_DIR/munged.ours"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
