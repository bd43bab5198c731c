package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tohost/tohost/protocol/authent"
)

func newUserCmd() *cobra.Command {
	var flags dirClientFlags
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage users in a tohost directory (set, del, lookup, check, search, rename, move)",
		Long: `user sends one authent command to a tohost directory and prints the reply lines.
It exits non-zero when the directory answers -ERR or -DEAD, or cannot be reached.
Admin commands (set, del, search, rename) need an admin network or --secret.`,
	}
	flags.register(cmd.PersistentFlags(), false)

	// run sends the line built by build and prints the reply.
	run := func(build func(args []string) (string, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			line, err := build(args)
			if err != nil {
				return err
			}
			c, err := flags.client(1, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Do(cmd.Context(), line)
			if err != nil {
				return err
			}
			printLines(cmd.OutOrStdout(), r)
			return r.Err()
		}
	}

	cmd.AddCommand(&cobra.Command{
		Use:   "set <user> <password>|(NULL) [label=value ...]",
		Short: `Create or update a user; (NULL) keeps the password, label="" removes a field`,
		Example: `  tohost user set bob@example.com s3cret quota=200000000 tohost=backend1
  tohost user set bob@example.com '(NULL)' name="Bob Smith" fwd=""`,
		Args: cobra.MinimumNArgs(2),
		RunE: run(func(args []string) (string, error) {
			pass := args[1]
			if pass == authent.NullPassword {
				pass = ""
			}
			fields := make([]authent.Field, 0, len(args)-2)
			for _, a := range args[2:] {
				f, err := authent.ParseFieldArg(a)
				if err != nil {
					return "", err
				}
				fields = append(fields, f)
			}
			return authent.SetLine(args[0], pass, fields)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "del <user>",
		Short: "Delete a user",
		Args:  cobra.ExactArgs(1),
		RunE:  run(func(args []string) (string, error) { return authent.DelLine(args[0]) }),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "lookup <user>",
		Short: "Show a user's fields",
		Args:  cobra.ExactArgs(1),
		RunE:  run(func(args []string) (string, error) { return authent.LookupLine(args[0]) }),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "check <user> <password> [ip]",
		Short: "Verify a user's password",
		Args:  cobra.RangeArgs(2, 3),
		RunE: run(func(args []string) (string, error) {
			ip := ""
			if len(args) == 3 {
				ip = args[2]
			}
			return authent.CheckLine(args[0], args[1], ip)
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rename <old> <new>",
		Short: "Rename a user, keeping password and fields",
		Args:  cobra.ExactArgs(2),
		RunE:  run(func(args []string) (string, error) { return authent.RenameLine(args[0], args[1]) }),
	})
	var from, max int
	search := &cobra.Command{
		Use:   "search <pattern>",
		Short: "List user names matching a pattern (* and ? wildcards, else a substring)",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(args []string) (string, error) {
			return authent.SearchLine(args[0], from, max)
		}),
	}
	search.Flags().IntVar(&from, "from", 0, "skip the first n matches")
	search.Flags().IntVar(&max, "max", -1, "return at most m matches (-1: all)")
	cmd.AddCommand(search)
	cmd.AddCommand(newUserMoveCmd(&flags))
	return cmd
}

// printLines prints a reply as the directory sent it.
func printLines(w io.Writer, r authent.Response) {
	var b strings.Builder
	for _, l := range r.Lines() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	fmt.Fprint(w, b.String())
}

func init() { root.AddCommand(newUserCmd()) }
