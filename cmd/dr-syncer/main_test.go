package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: []string{"dr-syncer ", "go1."}},
		{name: "--version", args: []string{"--version"}, wantCode: exitOK, wantStdout: []string{"dr-syncer "}},
		{name: "help lists the contract", args: []string{"--help"}, wantCode: exitOK, wantStdout: []string{
			"init", "snapshot", "render", "diff", "apply", "sync", "rollback", "status", "failover", "run", "agent", "version",
		}},
		{name: "no command shows help", args: nil, wantCode: exitOK, wantStdout: []string{"Available Commands:"}},
		{name: "command help", args: []string{"render", "--help"}, wantCode: exitOK, wantStdout: []string{"dr-syncer render --repo DIR|URL [--ref REF]"}},
		{name: "unknown command", args: []string{"bogus"}, wantCode: exitUsage, wantStderr: []string{`unknown command "bogus"`}},
		{name: "unknown flag", args: []string{"version", "--bogus"}, wantCode: exitUsage, wantStderr: []string{"unknown flag: --bogus"}},
	}
	for _, p := range plannedCommands {
		name := strings.Fields(p.use)[0]
		tests = append(tests, struct {
			name       string
			args       []string
			wantCode   int
			wantStdout []string
			wantStderr []string
		}{
			name:       name + " is not implemented yet",
			args:       []string{name, "--repo", "/nonexistent"},
			wantCode:   exitUsage,
			wantStderr: []string{name + ": not implemented yet (issue #"},
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			for _, w := range tc.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr.String())
				}
			}
			if tc.wantCode != exitOK && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("want exactly one error line on stderr, got:\n%s", stderr.String())
			}
		})
	}
}
