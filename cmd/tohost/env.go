package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// bindEnv gives every flag of cmd that was not set on the command line the
// value of its environment variable TOHOST_<FLAG> (dashes become
// underscores), so each flag can also be configured from the environment.
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "TOHOST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			// Set through the flag set, so the flag counts as changed
			// and the config file (loaded after) leaves it alone.
			if e := cmd.Flags().Set(f.Name, v); e != nil {
				err = &envError{name: name, err: e}
			}
		}
	})
	return err
}

type envError struct {
	name string
	err  error
}

func (e *envError) Error() string { return e.name + ": " + e.err.Error() }

func init() {
	// Precedence: a flag on the command line, then its TOHOST_*
	// variable, then --config's file, then the default.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := bindEnv(cmd); err != nil {
			return err
		}
		return loadConfig(cmd, configPath)
	}
}

// readSecretFile sets *dst to the content of path, without the line ending
// an editor or `echo` leaves, when path is given. Every secret and password
// file flag reads through here, so a server and its clients agree on what
// a file holds.
func readSecretFile(flag, path string, dst *string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	*dst = strings.TrimRight(string(b), "\r\n")
	return nil
}

// atLeast refuses a numeric flag value below its minimum, naming the flag:
// a negative size or duration would otherwise panic or quietly mean
// something else deep inside a server.
func atLeast[T int | int32 | time.Duration](flag string, v, min T) error {
	if v < min {
		return fmt.Errorf("--%s: %v is out of range (the least is %v)", flag, v, min)
	}
	return nil
}

// within refuses a numeric flag value outside [min, max], naming the flag.
func within(flag string, v, min, max int) error {
	if v > max {
		return fmt.Errorf("--%s: %v is out of range (the most is %v)", flag, v, max)
	}
	return atLeast(flag, v, min)
}
