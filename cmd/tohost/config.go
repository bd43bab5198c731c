package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// configPath is --config: a TOML file of flag values.
var configPath string

func init() {
	root.PersistentFlags().StringVar(&configPath, "config", "", "TOML file of flag values, one [section] per subcommand (see docs/config.md); flags and TOHOST_* variables override it")
}

// loadConfig gives every flag of cmd that neither the command line nor
// the environment set the value the config file holds for it, under the
// file's section for cmd ([directory], [proxy], [user.set]...). A key that
// is not a flag of cmd, or a value of the wrong kind, is an error naming
// the file, the section and the key: a typo must not pass unnoticed.
func loadConfig(cmd *cobra.Command, path string) error {
	if path == "" {
		return nil
	}
	var file map[string]any
	if _, err := toml.DecodeFile(path, &file); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	section := sectionName(cmd)
	raw, ok := lookupSection(file, section)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // errors in a stable order
	for _, k := range keys {
		where := fmt.Sprintf("--config %s: [%s] %s", path, section, k)
		f := cmd.Flags().Lookup(k)
		if f == nil || k == "config" || k == "help" {
			return fmt.Errorf("%s: not a flag of tohost %s", where, section)
		}
		if f.Changed {
			continue // the command line or the environment said otherwise
		}
		v, err := configValue(f, raw[k])
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// sectionName is the command's path below tohost, dotted: "directory",
// "user.set".
func sectionName(cmd *cobra.Command) string {
	path := strings.Fields(cmd.CommandPath())
	return strings.Join(path[1:], ".")
}

// lookupSection finds a dotted section ("user.set" is [user.set], a table
// within [user]).
func lookupSection(file map[string]any, section string) (map[string]any, bool) {
	cur := file
	for _, part := range strings.Split(section, ".") {
		next, ok := cur[part].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// configValue turns a TOML value into the text the flag parses. Durations
// must be written as strings ("30s"): a bare number would be nanoseconds.
func configValue(f *pflag.Flag, v any) (string, error) {
	kind := f.Value.Type()
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		if kind == "duration" {
			return "", fmt.Errorf("write a duration as a string, such as \"30s\"")
		}
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		if !strings.HasSuffix(kind, "Slice") {
			return "", fmt.Errorf("a list, but the flag takes one %s", kind)
		}
		parts := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("list item %d is not a string", i+1)
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list item %q holds a comma", s)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %T is not a flag value", v)
}
