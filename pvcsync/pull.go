package pvcsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// killGrace is how long rsync gets to save its partial file when a pull is
// cancelled.
const killGrace = 3 * time.Second

// PullOptions say what one copy pulls from which agent, and where to.
type PullOptions struct {
	// Agent is where the source node's agent listens.
	Agent Endpoint
	// Path is the volume directory on the source node; its content (not the
	// directory itself) is copied.
	Path string
	// Dest is the target volume's directory; it ends up holding exactly
	// what Path holds (--delete).
	Dest string
	// KeyDir holds KeyFile, CertificateFile and KnownHostsFile
	// (WriteCredentials).
	KeyDir string
	// InPlace writes changed files in place (--inplace): about a quarter
	// faster and ~99% fewer writes on a delta pass, but a killed run leaves
	// half-written files, so only a run that succeeded may be trusted or
	// snapshotted. Off, rsync writes a temporary file and renames it.
	InPlace bool
	// Sparse turns runs of zeros into holes (--sparse). Callers should set
	// it by default (the zero value is off only for compatibility; the
	// agent command's --sparse flag and KubeRunner/LocalRunner pass it
	// through): it costs little on data without holes and saves time and
	// disk on sparse files, and without it a sparse file takes its whole
	// apparent size on the target, so a thin volume of sparse VM images may
	// not fit in a target of the same size at all. The content is the
	// same; only runs of zeros become holes, so a file never takes more
	// room on the target than on the source.
	//
	// Measured by BenchmarkPull (3 runs on a busy 2-core machine, medians
	// of the ratios within each run, rsync 3.5, loopback, aes128-gcm): a
	// 2 GiB file of random data, no holes to find: 1.04× the time (runs:
	// 1.03, 1.04, 1.38) and 1.16× the CPU (the receiver scans each block
	// for zeros); a 2 GiB file holding 10% data: 0.72× the time (0.65,
	// 0.72, 1.14), 0.90× the CPU, and 215 MB allocated on the target
	// instead of 2,147 MB. The bytes on the wire are the same either way.
	// A second session's 3 runs (load 1–5) gave 1.28, 1.02 and 1.20× the
	// time on the random file: between the ~4% above and DESIGN.md's ~20%,
	// depending on how busy the receiver's core is. The mapping can turn it
	// off (spec.volumes.sparse: false) for volumes without holes.
	Sparse bool
	// Progress, when set, gets each --info=progress2 update.
	Progress func(Progress)
	// RsyncPath and SSHPath are the binaries ("rsync" and "ssh" from PATH
	// when empty).
	RsyncPath, SSHPath string
}

// rsyncFlags are the flags of every pull, chosen for fidelity:
//
//   - -a: recursive, symlinks as symlinks, permissions, times, owner and
//     group, devices and specials;
//   - -H: hard links stay hard links (one inode, not copies);
//   - -A, -X: POSIX ACLs and extended attributes (SELinux labels and
//     capabilities among them);
//   - --numeric-ids: owners by number: the target pod has no passwd entry
//     for the source's users, and names could map to other numbers;
//   - --delete: files deleted on the source are deleted on the target, so
//     the target is a copy, not an accumulation;
//   - --partial: a killed transfer keeps what it received, so the retry
//     resumes with the delta algorithm instead of starting over;
//   - --modify-window=-1: the quick check (size and modification time)
//     compares nanoseconds, not whole seconds: a file rewritten with the
//     same size within the second of the last copy is copied again, not
//     silently skipped (found by TestVolumesLocal in package controller);
//   - --info=progress2 --stats --no-human-readable: one progress line for the
//     whole transfer and the final figures, in plain numbers for the parser.
//
// Left out on purpose: -z (costs 5–20% on fast links), -c (makes a
// no-change pass slower than a full copy), --fsync (3× slower on small
// files). Measured figures are in DESIGN.md, "Test environment".
var rsyncFlags = []string{
	"-aHAX", "--numeric-ids", "--delete", "--partial", "--modify-window=-1",
	"--info=progress2", "--stats", "--no-human-readable",
}

// sshCiphers are offered by the client in this order: AES-GCM is the
// fastest on both the agent (x/crypto) and OpenSSH.
const sshCiphers = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"

// Pull copies o.Path from the agent at o.Agent into o.Dest with the real
// rsync and the real OpenSSH client, authenticated by the credentials in
// o.KeyDir and pinned to the agent's host key. It returns rsync's figures.
//
// The ssh client runs with no user or system configuration (-F /dev/null),
// only the run's key and certificate, only the pinned host key (strict
// checking, no global known_hosts), in batch mode, with password
// authentication and all forwarding off, and AES-GCM first.
//
// rsync runs with -aHAX --numeric-ids --delete --partial, plus --sparse if
// o.Sparse and --inplace if o.InPlace (see rsyncFlags for why each).
//
// A non-zero exit of rsync is a *RsyncError carrying the exit code and the
// last lines of rsync's stderr. When ctx ends, rsync and ssh (one process
// group) are killed and the error wraps ctx.Err().
func Pull(ctx context.Context, o PullOptions) (Stats, error) {
	args, err := o.rsyncArgs()
	if err != nil {
		return Stats{}, err
	}
	where := fmt.Sprintf("pull %s:%s", o.Agent, o.Path)
	if err := os.MkdirAll(o.Dest, 0o755); err != nil {
		return Stats{}, fmt.Errorf("%s: destination %s: %w", where, o.Dest, err)
	}
	rsync, err := exec.LookPath(orDefault(o.RsyncPath, "rsync"))
	if err != nil {
		return Stats{}, fmt.Errorf("%s: rsync: %w", where, err)
	}
	cmd := exec.CommandContext(ctx, rsync, args...)
	cmd.Env = pullEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited := make(chan struct{})
	defer close(exited)
	// rsync and the ssh it started share a process group: stop them all.
	// SIGTERM first, so that rsync keeps the partial file (--partial) for
	// the next run; SIGKILL if they linger.
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		err := syscall.Kill(-pgid, syscall.SIGTERM)
		go func() {
			select {
			case <-exited:
			case <-time.After(killGrace):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}()
		return err
	}
	cmd.WaitDelay = 2 * killGrace
	stderr := &tailWriter{max: 20}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Stats{}, fmt.Errorf("%s: %w", where, err)
	}
	if err := cmd.Start(); err != nil {
		return Stats{}, fmt.Errorf("%s: start rsync: %w", where, err)
	}
	tail := &tailWriter{max: 40}
	scanErr := scanProgress(stdout, func(line string) {
		if p, ok := ParseProgress(line); ok {
			if o.Progress != nil {
				o.Progress(p)
			}
			return
		}
		tail.addLine(line)
	})
	if scanErr != nil {
		// Keep rsync from blocking on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return Stats{}, fmt.Errorf("%s: %w", where, ctx.Err())
	}
	if waitErr != nil {
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ExitCode() > 0 {
			return Stats{}, fmt.Errorf("%s: %w", where, &RsyncError{ExitCode: ee.ExitCode(), Message: stderr.String()})
		}
		return Stats{}, fmt.Errorf("%s: %w", where, &RsyncError{ExitCode: -1, Message: waitErr.Error()})
	}
	stats, ok := ParseStats([]byte(tail.String()))
	if !ok {
		return Stats{}, fmt.Errorf("%s: rsync succeeded but printed no --stats figures", where)
	}
	return stats, nil
}

// rsyncArgs builds rsync's argv, checking o first.
func (o PullOptions) rsyncArgs() ([]string, error) {
	where := fmt.Sprintf("pull %s:%s", o.Agent, o.Path)
	switch {
	case o.Agent.Host == "" || o.Agent.Port <= 0 || o.Agent.Port > 65535:
		return nil, fmt.Errorf("%s: bad agent endpoint", where)
	case !filepath.IsAbs(o.Path):
		return nil, fmt.Errorf("%s: source path must be absolute", where)
	case o.Dest == "":
		return nil, fmt.Errorf("%s: no destination", where)
	case o.KeyDir == "":
		return nil, fmt.Errorf("%s: no key directory", where)
	}
	sshPath, err := exec.LookPath(orDefault(o.SSHPath, "ssh"))
	if err != nil {
		return nil, fmt.Errorf("%s: ssh: %w", where, err)
	}
	sshArgs := []string{
		sshPath,
		"-F", "/dev/null",
		"-i", filepath.Join(o.KeyDir, KeyFile),
		"-o", "CertificateFile=" + filepath.Join(o.KeyDir, CertificateFile),
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + filepath.Join(o.KeyDir, KnownHostsFile),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "PasswordAuthentication=no",
		"-o", "KbdInteractiveAuthentication=no",
		"-o", "ForwardAgent=no",
		"-o", "ForwardX11=no",
		"-o", "ClearAllForwardings=yes",
		// A vanished agent ends the copy instead of hanging it.
		"-o", "ConnectTimeout=30",
		"-o", "ServerAliveInterval=15",
		"-o", "ServerAliveCountMax=4",
		"-c", sshCiphers,
		"-l", AgentUser,
		"-p", strconv.Itoa(o.Agent.Port),
	}
	var e strings.Builder
	for i, a := range sshArgs {
		q, err := quoteForRsync(a)
		if err != nil {
			return nil, fmt.Errorf("%s: ssh argument: %w", where, err)
		}
		if i > 0 {
			e.WriteByte(' ')
		}
		e.WriteString(q)
	}
	args := append([]string(nil), rsyncFlags...)
	if o.Sparse {
		args = append(args, "--sparse")
	}
	if o.InPlace {
		args = append(args, "--inplace")
	}
	host := o.Agent.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	args = append(args, "-e", e.String(),
		host+":"+withSlash(o.Path),
		withSlash(o.Dest))
	return args, nil
}

// quoteForRsync quotes an argument of -e: rsync splits that string on
// blanks and honours single and double quotes.
func quoteForRsync(s string) (string, error) {
	if !strings.ContainsAny(s, " \t\"'\\") && s != "" {
		return s, nil
	}
	if strings.Contains(s, "'") {
		return "", fmt.Errorf("%q contains a single quote", s)
	}
	return "'" + s + "'", nil
}

func withSlash(p string) string {
	if strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pullEnv is the environment of rsync and ssh: ours, minus what would change
// how rsync passes paths to the agent (the agent refuses --protect-args) or
// what ssh reads.
func pullEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "RSYNC_PROTECT_ARGS", "RSYNC_OLD_ARGS", "RSYNC_RSH", "SSH_AUTH_SOCK", "LC_ALL":
			continue
		}
		env = append(env, kv)
	}
	// Figures in the C locale: no thousands separators of another locale.
	return append(env, "LC_ALL=C")
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' || b == '\r' {
			if len(t.partial) > 0 {
				t.addLineLocked(string(t.partial))
				t.partial = t.partial[:0]
			}
			continue
		}
		if len(t.partial) < 4096 {
			t.partial = append(t.partial, b)
		}
	}
	return len(p), nil
}

func (t *tailWriter) addLine(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLineLocked(s)
}

func (t *tailWriter) addLineLocked(s string) {
	if strings.TrimSpace(s) == "" {
		return
	}
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// String is the kept lines, the unfinished one included.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
	}
	return strings.Join(lines, "\n")
}
