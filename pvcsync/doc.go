// Package pvcsync is the per-commit PVC data stage: it plans one transfer per
// replicated PersistentVolumeClaim, serves source volumes read-only through an
// SSH agent on the source node, pulls them with rsync from a temporary pod in
// the target cluster (or from local processes running the same commands, for
// tests and the demo), and reports one result per PVC.
//
// It must not apply non-PVC resources; the objects are the reconciler's.
//
// # The path of the data
//
//	source node                                   target cluster
//	┌──────────────────────────────┐              ┌──────────────────────────────────┐
//	│ agent (DaemonSet, hostPort)  │   SSH, AES-  │ pull Job (one per claim and run) │
//	│  rsync --server --sender … ◀─┼──────────────┼─ rsync -aHAX … -e ssh            │
//	│  /var/lib/kubelet (ro)       │   GCM first  │  target claim at /data           │
//	└──────────────────────────────┘              └──────────────────────────────────┘
//
// [Plan] reads the source cluster: for each claim of the commit whose data is
// copied (policies.SyncConfig.CopiesData), the running pod that mounts it,
// its node, the node's address for the agent, and the volume's directory on
// the node (<kubelet>/pods/<pod-uid>/volumes/kubernetes.io~<plugin>/<pv>, with
// /mount for CSI; a hostPath PV's own path). The target claim is the one of
// the same name in the mapped namespace of the commit's rendered state. A
// volume mounted on several nodes (ReadWriteMany) is copied once; an
// unmounted claim is Skipped, or mounted by a temporary read-only pod on the
// source under the Mount policy.
//
// [Stage] runs the transfers: fresh credentials per attempt, Concurrency at
// once, failed attempts retried with exponential backoff, and the results
// recorded by [RecordStore] in the target (ConfigMap
// dr-syncer-system/volumes-<mapping>): per target claim, the commit whose
// data it holds (the last copy that succeeded), when, how long, how many
// bytes, and the last attempt with its error. A copy that fails after it may
// have written marks the claim Dirty: its data is a mix until a copy
// succeeds. The controller runs the stage after every apply, in its own
// goroutine, for the newest commit only: commits that arrive while a copy
// runs are folded into one copy at the newest (not a queue).
//
// # Runners
//
// [KubeRunner] creates, in the target claim's namespace, a Secret with the
// run's credentials and a Job that mounts the claim and runs `dr-syncer
// agent pull`, which runs [Pull] and writes a [PullReport] as its
// termination message; the runner reads it back, and a pod that ends without
// a report that says exit code 0 is a failure, never a success. While the
// pod runs, progress (a line a second, [FormatProgress]) is read from its
// log when the caller wants progress — the CLI's bars; the controller reads
// no logs — and only then: the outcome never depends on a log. Job and
// Secret are deleted afterwards. [LocalRunner] runs [Pull] as local
// processes into a directory standing for the target claim: the data path of
// the tests and of `make demo`, with the very same rsync and ssh commands.
//
// # Security
//
//   - The agent ([Agent]) is an SSH server (golang.org/x/crypto/ssh) that
//     accepts public keys only: per-run user certificates signed by the
//     agents' user CA (valid 15 minutes, principal dr-syncer, the critical
//     option path@dr-syncer.io binding them to one volume directory, no
//     extensions), or plain keys it is given. No password, no shell, no pty,
//     no subsystem, no environment, no port or agent forwarding, no global
//     requests.
//   - It runs nothing but `rsync --server --sender` (a read) with allowlisted
//     options, started directly (no shell), on paths that resolve, symlinks
//     followed, inside a persistent volume's directory of the kubelet (never
//     secret, configMap, projected or emptyDir volumes) or an extra root.
//     Every refusal is logged with the remote address, user and key
//     fingerprint.
//   - The client is the OpenSSH ssh with no configuration files, the run's
//     key only, the agents' host key pinned (StrictHostKeyChecking=yes, a
//     known_hosts holding only that key), batch mode and all forwarding off.
//     Keys never reach logs, errors or the repository; the pull Job gets them
//     from a Secret deleted with it.
//
// # rsync
//
// Pulls run `rsync -aHAX --numeric-ids --delete --partial
// --modify-window=-1` (see rsyncFlags for each flag's reason), plus
// --sparse (the CLI and the controller always set it: see PullOptions.Sparse)
// and --inplace (spec.volumes.inPlace). rsync's delta
// algorithm moves only what changed: a 1% change of a 64 MiB file moves
// about 1% of it.
package pvcsync
