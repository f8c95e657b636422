package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRunCommand() *cobra.Command {
	return planned{"run --repo DIR|URL", "Run the controller: scheduled or continuous replication", 6}.command()
}

var _ = fmt.Sprint
