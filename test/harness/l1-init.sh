#!/bin/busybox sh
# PID 1 of the harness's L1 VM (QEMU TCG with emulated SVM): load KVM, run one test command,
# report its exit code on the serial console, power off. Lines starting MIMOBOX_HARNESS_ are
# read by run-in-harness.sh; anything else is the test's own output.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# KVM's per-VM counters (exits and their kinds), which sandbox_bench reports per operation.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
fail() { printf '\nMIMOBOX_HARNESS_FAIL=%s\n' "$*"; poweroff -f; sleep 5; }
for m in irqbypass kvm kvm-amd; do
  insmod /harness/modules/$m.ko || fail "insmod $m.ko"
done
[ -c /dev/kvm ] || fail "/dev/kvm missing after loading kvm-amd"
echo "MIMOBOX_HARNESS_KVM_READY cpus=$(grep -c ^processor /proc/cpuinfo)"
# Heartbeat on the second serial port: the host stops waiting for an L1 that no longer runs
# anything (TCG sometimes hangs it whole, with no soft-lockup report) within a minute.
( while :; do echo alive > /dev/ttyS1; sleep 10; done ) 2>/dev/null &
watchdog=$(sed -n 's/.*mimobox.watchdog=\([0-9]*\).*/\1/p' /proc/cmdline)
# A vsock operation stuck this long prints the device and connection state (see vsock_host).
export MIMOBOX_KVM_MODE=native HOME=/tmp BOOST_TEST_COLOR_OUTPUT=no MIMOBOX_VSOCK_STALL_LOG_S=30
[ -d /harness/assets ] && export MIMOBOX_VM_ASSETS_DIR=/harness/assets
cd /harness/test
# Watchdog: if the test outlives MIMOBOX_L1_WATCHDOG seconds, show where its threads wait
# (kernel stacks) before the host-side timeout kills the L1, so a hang can be told from a wedge.
sh /harness/test/command &
test_pid=$!
( sleep "${watchdog:-240}"
  echo "MIMOBOX_HARNESS_WATCHDOG: test still running after ${watchdog:-240}s; thread states:"
  for t in /proc/[0-9]*/task/*; do
    [ -r "$t/stat" ] || continue
    echo "$t $(cut -d' ' -f2,3 "$t/stat") wchan=$(cat "$t/wchan" 2>/dev/null)"
    cat "$t/stack" 2>/dev/null | head -n 6
  done ) &
wd_pid=$!
wait "$test_pid"
rc=$?
kill "$wd_pid" 2>/dev/null
# Own line: the test may have left its last line unterminated.
printf '\nMIMOBOX_HARNESS_EXIT=%d\n' "$rc"
poweroff -f
