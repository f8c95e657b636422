// Command dr-syncer keeps a disaster-recovery copy of a Kubernetes cluster
// through a Git repository. This package only wires flags to the packages
// that do the work; see ../../README.md and the packages' doc.go files.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // time zones of scheduled mode, on machines without zone files

	"github.com/spf13/cobra"
)

// Exit codes. They are part of the command-line contract: scripts read them.
const (
	exitOK    = 0
	exitError = 1 // the command failed (or, for diff, found differences)
	exitUsage = 2 // the command line is wrong, or the command is not implemented yet
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code. Errors are
// printed once, to stderr, prefixed with the program name.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if missingRequiredFlag(cmd) {
		// cobra checks required flags before the command runs and has no
		// error type for it: a missing one is a wrong command line.
		err = usageError(err)
	}
	var ce *codedError
	if errors.As(err, &ce) && ce.silent {
		return ce.code
	}
	fmt.Fprintf(stderr, "dr-syncer: %v\n", err)
	if ce != nil {
		return ce.code
	}
	return exitError
}

// codedError carries the exit code that an error should end the process with.
type codedError struct {
	code   int
	err    error
	silent bool // the command has said all there is to say
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func usageError(err error) error { return &codedError{code: exitUsage, err: err} }

// missingRequiredFlag reports whether cmd has a required flag that the
// command line did not set.
func missingRequiredFlag(cmd *cobra.Command) bool {
	return cmd != nil && cmd.ValidateRequiredFlags() != nil
}
