#!/usr/bin/env bash
# A one-node Slurm on this machine for the `slurm`-marked tests: munge, slurmctld and slurmd
# on localhost, without systemd or cgroups. Idempotent: daemons already up are left alone.
#
#   tests/slurm/start.sh            # start (installing slurm-wlm + munge with apt if missing)
#   tests/slurm/start.sh stop       # stop the daemons it started (by the pids in their files)
#
# Everything lives in $DSE_SLURM_DIR (default /tmp/dse-slurm); clients find the cluster
# through SLURM_CONF=$DSE_SLURM_DIR/slurm.conf, which the tests set themselves.
set -euo pipefail
DIR=${DSE_SLURM_DIR:-/tmp/dse-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

stop() {
  for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "slurm-wlm and munge are not installed (needs root)"; exit 1; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) \
    >/dev/null 2>&1 || { echo "apt-get install slurm-wlm munge failed"; exit 1; }
fi
[ "$(id -u)" = 0 ] || { echo "starting slurmd needs root"; exit 1; }
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: the key Debian ships, the daemon as the munge user
if ! alive "$DIR/munged.pid"; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
  chmod 0700 /etc/munge /var/lib/munge && chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  rm -f "$DIR/munged.pid"
  touch "$DIR/munged.pid" && chown munge "$DIR/munged.pid"
  su -s /bin/sh munge -c "/usr/sbin/munged --force --pid-file=$DIR/munged.pid"
fi
for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.1; done

NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
cat > "$CONF.new" <<CONF
ClusterName=dse-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ReturnToService=2
MaxArraySize=10000
KillWait=10
MinJobAge=300
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.new" "$CONF"

alive "$DIR/slurmctld.pid" || /usr/sbin/slurmctld -i -f "$CONF"
alive "$DIR/slurmd.pid" || /usr/sbin/slurmd -f "$CONF"

for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
    echo "slurm is up: node $NODE, $CPUS CPUs (SLURM_CONF=$CONF)"
    exit 0
  fi
  sleep 0.5
done
echo "slurm did not come up; logs in $DIR/log"
exit 1
