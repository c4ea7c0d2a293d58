# Sourced: N test hosts on this one machine, for runs across hosts. Each host is a network
# namespace with one interface (eth0, 10.231.0.I/24) on a bridge that lives in a namespace of
# its own, so no address is ever added outside namespaces this script made; each process
# started "on" a host also gets that host's name (a UTS namespace: unshare --uts). Open MPI
# reaches the hosts over TCP through tests/cluster/netns-rsh, its rsh agent, which enters the
# host's namespaces instead of logging in. Everything is removed by hosts_down (on EXIT).
#
#   source tests/cluster/hosts.sh
#   hosts_up 2                          # hosts cnNNNNNh1, cnNNNNNh2
#   "${mpirun_hosts[@]}" -np 4 prog ...   # mpirun on host 1, ranks on every host
#   host_link 2 down                    # cut host 2 off (and `up` again)
#   hosts_down
hosts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hosts_tag="cn$(($$ % 100000))"
hosts_n=0
hosts_subnet=10.231.0

hosts_need() {
  if [[ $(id -u) != 0 ]]; then echo "SKIP: test hosts need root (network namespaces)"; exit 77; fi
  for t in ip unshare mpirun; do
    command -v "$t" >/dev/null || { echo "SKIP: test hosts need '$t'"; exit 77; }
  done
  ip netns add "${hosts_tag}probe" 2>/dev/null ||
    { echo "SKIP: cannot create network namespaces here"; exit 77; }
  ip netns del "${hosts_tag}probe"
}

host_name() { echo "${hosts_tag}h$1"; }
host_ip() { echo "$hosts_subnet.$1"; }

hosts_up() {
  hosts_need
  hosts_n=$1
  trap hosts_down EXIT
  local sw="${hosts_tag}sw"
  ip netns add "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local i map=""
  for ((i = 1; i <= hosts_n; i++)); do
    local h; h=$(host_name "$i")
    ip netns add "$h"
    ip link add "${h}a" type veth peer name "${h}b"
    ip link set "${h}a" netns "$h"
    ip link set "${h}b" netns "$sw"
    ip -n "$h" link set "${h}a" name eth0
    ip -n "$h" addr add "$(host_ip "$i")/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
    ip -n "$sw" link set "${h}b" master br0
    ip -n "$sw" link set "${h}b" up
    map+="$(host_ip "$i")=$h "
  done
  export COATNET_TEST_HOSTS="$map"  # read by netns-rsh: address -> namespace (and hostname)
  hosts_file=$(mktemp /tmp/coatnet_hosts.XXXXXX)
  for ((i = 1; i <= hosts_n; i++)); do echo "$(host_ip "$i") slots=${hosts_slots:-2}"; done >"$hosts_file"
  hosts_mpirun
}

hosts_down() {
  local i
  for ((i = 1; i <= hosts_n; i++)); do
    ip netns pids "$(host_name "$i")" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$(host_name "$i")" 2>/dev/null
  done
  ip netns del "${hosts_tag}sw" 2>/dev/null
  [[ -n ${hosts_file:-} ]] && rm -f "$hosts_file"
  hosts_n=0
  return 0
}

# on_host I CMD...: CMD in host I's network namespace, with its name as hostname. nsenter, not
# `ip netns exec`: that remounts /sys, which hides the cgroup file system slurmd needs.
on_host() {
  local h; h=$(host_name "$1"); shift
  nsenter --net="/var/run/netns/$h" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" "$@"
}

# mpirun across the test hosts, started on host 1: TCP on the test subnet only. Used as
# `"${mpirun_hosts[@]}" -np 4 PROG ...` (an array, so that on_host can run it).
# hosts_mpi_opts holds the options alone (for launch/coatnet-mpirun).
mpirun_hosts=()
hosts_mpi_opts=()
hosts_mpirun() {
  hosts_mpi_opts=(--hostfile "$hosts_file" --mca plm_rsh_agent "$hosts_dir/netns-rsh"
                  --mca btl tcp,self --mca btl_tcp_if_include "$hosts_subnet.0/24"
                  --mca oob_tcp_if_include "$hosts_subnet.0/24" --bind-to none)
  mpirun_hosts=(on_host 1 mpirun "${hosts_mpi_opts[@]}")
}

# host_link I up|down: connects or cuts host I (its interface in its namespace).
host_link() { ip -n "$(host_name "$1")" link set eth0 "$2"; }
