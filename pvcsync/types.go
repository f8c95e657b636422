package pvcsync

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// AgentUser is the SSH user name the rsync client logs in as, and the only
// principal a per-run certificate is issued for.
const AgentUser = "dr-syncer"

// DefaultAgentPort is the agent's SSH port on a source node (a host port of
// the agent DaemonSet).
const DefaultAgentPort = 2222

// DefaultKubeletDir is where the kubelet keeps pod volumes on a node.
const DefaultKubeletDir = "/var/lib/kubelet"

// Endpoint is where an agent listens.
type Endpoint struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// Claim names a PersistentVolumeClaim.
type Claim struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (c Claim) String() string { return c.Namespace + "/" + c.Name }

// Transfer is one planned copy: the data of a source PVC, served by the agent
// of the node where it is mounted, into the target PVC that the rendered
// state maps it to.
type Transfer struct {
	Source Claim `json:"source"`
	Target Claim `json:"target"`
	// Node is the source node whose agent serves the volume, and Agent how
	// to reach that agent from the target.
	Node  string   `json:"node"`
	Agent Endpoint `json:"agent"`
	// Path is the volume's directory on the source node (the kubelet's
	// mount of it, or a hostPath/local PV's own directory).
	Path string `json:"path"`
	// Commit is the repository commit the copy runs for.
	Commit string `json:"commit"`
}

// State is the outcome of one PVC's copy.
type State string

// States of a copy.
const (
	StateSucceeded State = "Succeeded"
	StateFailed    State = "Failed"
	// StateSkipped: nothing was copied, on purpose (an unmounted PVC under
	// the skip policy, a PVC the rendered state does not hold); Reason says
	// why.
	StateSkipped State = "Skipped"
)

// Stats are rsync's own figures for one copy (--stats), as received by the
// pulling side.
type Stats struct {
	// Files is the number of files in the transfer, FilesTransferred how
	// many had to be sent.
	Files            int64 `json:"files"`
	FilesTransferred int64 `json:"filesTransferred"`
	// TotalSize is the size of all files, TransferredSize the size of the
	// files that changed (not the bytes on the wire).
	TotalSize       int64 `json:"totalSize"`
	TransferredSize int64 `json:"transferredSize"`
	// LiteralBytes is data sent as is, MatchedBytes data found in the
	// target already (rsync's delta algorithm).
	LiteralBytes int64 `json:"literalBytes"`
	MatchedBytes int64 `json:"matchedBytes"`
	// BytesSent and BytesReceived are the bytes on the wire, seen from the
	// pulling side: BytesReceived is what came from the source.
	BytesSent     int64 `json:"bytesSent"`
	BytesReceived int64 `json:"bytesReceived"`
}

// Result is what one PVC's copy did.
type Result struct {
	Transfer Transfer `json:"transfer"`
	State    State    `json:"state"`
	// Reason says why a copy failed or was skipped.
	Reason   string        `json:"reason,omitempty"`
	Started  time.Time     `json:"started,omitzero"`
	Duration time.Duration `json:"duration,omitempty"`
	Attempts int           `json:"attempts,omitempty"`
	Stats    Stats         `json:"stats,omitzero"`
	// ExitCode is rsync's exit code of the last attempt (-1: rsync did not
	// run to an exit).
	ExitCode int `json:"exitCode,omitempty"`
}

// Progress is one of rsync's --info=progress2 lines: the whole transfer so
// far.
type Progress struct {
	Bytes   int64   `json:"bytes"`
	Percent int     `json:"percent"`
	Rate    float64 `json:"rate"` // bytes per second
	// ToCheck and Total are rsync's to-chk=ToCheck/Total: files left to
	// look at of the files known so far.
	ToCheck int64 `json:"toCheck"`
	Total   int64 `json:"total"`
}

// RsyncError is a copy that rsync ended with a non-zero exit code.
type RsyncError struct {
	ExitCode int
	// Message is the last lines rsync wrote to stderr (never a key or a
	// credential: rsync and ssh do not print them).
	Message string
}

func (e *RsyncError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("rsync exited with code %d", e.ExitCode)
	}
	return fmt.Sprintf("rsync exited with code %d: %s", e.ExitCode, e.Message)
}

// Credentials are what one copy needs to reach one agent: a key made for the
// run, the certificate that the agents' user CA signed for it (valid for
// the run only, for one path), and the pinned host key of the agents.
type Credentials struct {
	// PrivateKey is the run's private key, OpenSSH PEM.
	PrivateKey []byte `json:"-"`
	// Certificate is the key's SSH user certificate, authorized_keys form.
	Certificate []byte `json:"-"`
	// KnownHosts pins the agents' host key, known_hosts form.
	KnownHosts []byte `json:"-"`
}

// Credential file names, in the directory given to Pull (and in the Secret
// the Kubernetes runner mounts).
const (
	KeyFile         = "id_ed25519"
	CertificateFile = "id_ed25519-cert.pub"
	KnownHostsFile  = "known_hosts"
)

// PullReport is what a pull writes as its termination message (JSON), and
// what the Kubernetes runner reads back from the finished pod.
type PullReport struct {
	// ExitCode is rsync's (0: success; -1: rsync did not run).
	ExitCode int   `json:"exitCode"`
	Stats    Stats `json:"stats,omitzero"`
	// Error is the failure, empty on success.
	Error string `json:"error,omitempty"`
}

// A Runner makes one attempt at one transfer: it pulls the source volume
// into the target claim with the run's credentials and returns rsync's
// figures. A failed attempt returns an error (an *RsyncError when rsync ran
// and failed); retries, concurrency and records are the Stage's.
type Runner interface {
	Run(ctx context.Context, t Transfer, creds Credentials, progress func(Progress)) (Stats, error)
}
