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
		Long: `migrate applies to the database at --postgres the schema migrations this
binary holds that it has not applied yet, prints "schema up to date" and exits.
tohost directory --postgres applies them at start too; migrate does it once,
before new nodes roll out. Several runs at once take turns (an advisory lock);
a second run changes nothing.`,
		Example: `  tohost directory migrate --postgres postgres://tohost@db/tohost`,
		Args:    cobra.NoArgs,
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
	cmd.Flags().StringVar(&url, "postgres", "", "PostgreSQL URL of the directory's store, as tohost directory --postgres (required)")
	return cmd
}
