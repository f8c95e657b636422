package pvcsync

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// Commands captured from rsync 3.5 (see TestServerArgsFromRealRsync, which
// rewrites testdata/serverargs/captured.golden with -update).
func TestParseSenderCommand(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    senderCommand
		wantErr string // substring; "" means accepted
	}{
		{
			name:    "pull flags (rsync 3.5, -aHAX --numeric-ids --delete --partial --sparse --inplace)",
			command: `rsync --server --sender -lHogDtpAXrSe.iLsfxCIvu --numeric-ids --inplace . /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount/`,
			want: senderCommand{
				Options: []string{"-lHogDtpAXrSe.iLsfxCIvu", "--numeric-ids", "--inplace"},
				Paths:   []string{"/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount/"},
			},
		},
		{
			name:    "-a only",
			command: `rsync --server --sender -logDtpre.iLsfxCIvu . /v/`,
			want:    senderCommand{Options: []string{"-logDtpre.iLsfxCIvu"}, Paths: []string{"/v/"}},
		},
		{
			name:    "escaped shell characters in the path",
			command: `rsync --server --sender -logDtpre.iLsfxCIvu . /src\ path/a\$b\;c\&d\'e/`,
			want:    senderCommand{Options: []string{"-logDtpre.iLsfxCIvu"}, Paths: []string{`/src path/a$b;c&d'e/`}},
		},
		{
			name:    "tuning options",
			command: `rsync --server --sender -vnlogDtprze.iLsfxCIvu --bwlimit=1000 --timeout=30 -B8192 --checksum-choice=xxh128 . /v`,
			want: senderCommand{
				Options: []string{"-vnlogDtprze.iLsfxCIvu", "--bwlimit=1000", "--timeout=30", "-B8192", "--checksum-choice=xxh128"},
				Paths:   []string{"/v"},
			},
		},
		{name: "not rsync", command: "ls /", wantErr: "not an rsync server command"},
		{name: "a shell", command: "sh -c 'cat /etc/shadow'", wantErr: "unescaped shell character"},
		{name: "rsync behind a shell", command: "sh -c rsync", wantErr: "not an rsync server command"},
		{name: "rsync by path", command: "/tmp/rsync --server --sender -logDtpre.iLsfxCIvu . /v/", wantErr: "not an rsync server command"},
		{name: "a write (no --sender)", command: "rsync --server -logDtpre.iLsfxCIvu . /v/", wantErr: "without --sender"},
		{name: "remove-source-files", command: "rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . /v/", wantErr: "--remove-source-files not allowed"},
		{name: "copy-links -L", command: "rsync --server --sender -lLogDtpre.iLsfxCIvu . /v/", wantErr: "-L not allowed"},
		{name: "copy-dirlinks -k", command: "rsync --server --sender -lkogDtpre.iLsfxCIvu . /v/", wantErr: "-k not allowed"},
		{name: "copy-unsafe-links", command: "rsync --server --sender -logDtpre.iLsfxCIvu --copy-unsafe-links . /v/", wantErr: "--copy-unsafe-links not allowed"},
		{name: "files-from on the server", command: "rsync --server --sender -logDtpRe.LsfxCIvu --files-from /etc/passwd . /v/", wantErr: "-R not allowed"},
		{name: "files-from alone", command: "rsync --server --sender -logDtpe.LsfxCIvu --files-from=/etc/passwd . /v/", wantErr: "--files-from not allowed"},
		{name: "exclude-from", command: "rsync --server --sender -logDtpre.iLsfxCIvu --exclude-from=/etc/shadow . /v/", wantErr: "--exclude-from not allowed"},
		{name: "include-from", command: "rsync --server --sender -logDtpre.iLsfxCIvu --include-from=/etc/shadow . /v/", wantErr: "--include-from not allowed"},
		{name: "log-file", command: "rsync --server --sender -logDtpre.iLsfxCIvu --log-file=/v/x . /v/", wantErr: "--log-file not allowed"},
		{name: "write-batch", command: "rsync --server --sender -logDtpre.iLsfxCIvu --write-batch=/v/b . /v/", wantErr: "--write-batch not allowed"},
		{name: "temp-dir", command: "rsync --server --sender -logDtpre.iLsfxCIvu --temp-dir=/tmp . /v/", wantErr: "--temp-dir not allowed"},
		{name: "copy-devices", command: "rsync --server --sender -logDtpre.iLsfxCIvu --copy-devices . /v/", wantErr: "--copy-devices not allowed"},
		{name: "protect-args", command: "rsync --server --sender -slogDtpre.iLsfxCIvu", wantErr: "-s not allowed"},
		{name: "no dot", command: "rsync --server --sender -logDtpre.iLsfxCIvu", wantErr: `no "."`},
		{name: "no path", command: "rsync --server --sender -logDtpre.iLsfxCIvu .", wantErr: "no path"},
		{name: "option after the paths", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/ --remove-source-files", wantErr: "after the paths"},
		{name: "value on a flag", command: "rsync --server --sender -logDtpre.iLsfxCIvu --numeric-ids=1 . /v/", wantErr: "bad value"},
		{name: "bad bwlimit", command: "rsync --server --sender -logDtpre.iLsfxCIvu --bwlimit=1k;id . /v/", wantErr: "unescaped shell character"},
		{name: "bad capabilities", command: "rsync --server --sender -logDtpre.i/x . /v/", wantErr: "bad capability"},
		{name: "command substitution", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/$(id)", wantErr: "unescaped shell character"},
		{name: "backquote", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/`id`", wantErr: "unescaped shell character"},
		{name: "glob", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/*", wantErr: "unescaped shell character"},
		{name: "pipe", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/ | sh", wantErr: "unescaped shell character"},
		{name: "newline", command: "rsync --server --sender -logDtpre.iLsfxCIvu . /v/\nid", wantErr: "shell character"},
		{name: "tilde", command: "rsync --server --sender -logDtpre.iLsfxCIvu . ~/x", wantErr: "leading ~"},
		{name: "trailing backslash", command: `rsync --server --sender -logDtpre.iLsfxCIvu . /v\`, wantErr: "trailing backslash"},
		{name: "empty", command: "", wantErr: "not an rsync server command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSenderCommand(tt.command)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errUnsafeCommand) {
					t.Fatalf("parseSenderCommand(%q) = %+v, %v; want an error with %q", tt.command, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSenderCommand(%q): %v", tt.command, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("parseSenderCommand(%q) (-want +got):\n%s", tt.command, d)
			}
		})
	}
}

// TestServerArgsFromRealRsync runs the installed rsync with a remote shell
// that records the command it would send, for the flag sets a pull uses
// and for dangerous ones, and checks what the parser makes of each.
func TestServerArgsFromRealRsync(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed")
	}
	dir := t.TempDir()
	logFile := filepath.Join(dir, "command")
	shell := filepath.Join(dir, "rsh")
	// ssh joins the words after the host with spaces: so does this.
	must(t, os.WriteFile(shell, []byte("#!/bin/sh\nshift\nprintf '%s' \"$*\" > "+logFile+"\nexit 1\n"), 0o755))
	tests := []struct {
		flags  string
		accept bool
	}{
		{"-aHAX --numeric-ids --delete --partial --info=progress2 --stats --no-human-readable", true},
		{"-aHAX --numeric-ids --delete --partial --sparse --info=progress2 --stats --no-human-readable", true},
		{"-aHAX --numeric-ids --delete --partial --inplace --info=progress2 --stats --no-human-readable", true},
		{"-aHAX --numeric-ids --delete --partial --sparse --inplace --info=progress2 --stats", true},
		{"-a", true},
		{"-a --delete", true},
		{"-az", true},
		{"-L -a", false},
		{"-a -k", false},
		{"-s -a", false},
		{"-a --remove-source-files", false},
		{"-a --copy-unsafe-links", false},
		{"-a --files-from=:/etc/passwd", false},
		{"-a -R", false},
	}
	var golden strings.Builder
	for _, tt := range tests {
		os.Remove(logFile)
		args := append(strings.Fields(tt.flags), "-e", shell, "host:/vol ume/$x;y/", filepath.Join(dir, "dst"))
		_ = exec.CommandContext(t.Context(), "rsync", args...).Run() // fails: the shell exits 1
		command, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatalf("rsync %s: no command recorded: %v", tt.flags, err)
		}
		golden.WriteString("rsync " + tt.flags + "\n\t" + string(command) + "\n")
		sc, err := parseSenderCommand(string(command))
		if tt.accept {
			if err != nil {
				t.Errorf("rsync %s sends %q: refused: %v", tt.flags, command, err)
			} else if d := cmp.Diff([]string{"/vol ume/$x;y/"}, sc.Paths); d != "" {
				t.Errorf("rsync %s: paths (-want +got):\n%s", tt.flags, d)
			}
		} else if err == nil {
			t.Errorf("rsync %s sends %q: accepted", tt.flags, command)
		}
	}
	goldenFile := filepath.Join("testdata", "serverargs", "captured.golden")
	if *update {
		must(t, os.MkdirAll(filepath.Dir(goldenFile), 0o755))
		must(t, os.WriteFile(goldenFile, []byte(golden.String()), 0o644))
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), golden.String()); d != "" {
		t.Errorf("rsync sends other commands than %s recorded (-want +got):\n%s", goldenFile, d)
	}
}
