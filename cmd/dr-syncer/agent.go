package main

import (
	"github.com/spf13/cobra"
)

func newAgentCommand() *cobra.Command {
	return planned{"agent", "Serve source volumes read-only to rsync over SSH (runs on a source node)", 5}.command()
}
