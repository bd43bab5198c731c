package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/directory/store/postgres"
)

// newMigrateCmd is `tohost directory migrate`: applies the PostgreSQL schema
// migrations and exits, for operators who migrate before rolling out nodes.
func newMigrateCmd() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL schema migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return errors.New("--postgres is required")
			}
			if err := postgres.Migrate(cmd.Context(), url); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "schema up to date")
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "postgres", "", "PostgreSQL URL")
	return cmd
}
