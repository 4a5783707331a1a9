// Package config loads a binary's settings in one way for every dnsguard
// command: defaults, then the YAML file named by --config, then the flags
// given on the command line. Each setting is written once, as a field of
// the binary's config struct (its json tag is the file key) bound to one
// flag; this package knows nothing of the fields themselves. It is a
// library, not a command: tests that check what the chart renders read the
// files with ReadFile, as the binaries do.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dnsguard/dnsguard/cmd/buildinfo"
)

// Load returns defaults() overlaid with the --config file (if args name
// one) and then with the flags args set explicitly, so a flag always wins
// over the file and the file over the defaults. bind registers the flags
// on fs, bound to the fields of c. Help and parse errors are printed to
// stderr; --help returns flag.ErrHelp, and so does --version after
// printing the version to stdout. The result is not validated.
func Load[T any](name string, args []string, stderr io.Writer, defaults func() T, bind func(c *T, fs *flag.FlagSet), usage func(fs *flag.FlagSet)) (T, error) {
	newFlags := func(c *T, out io.Writer) (*flag.FlagSet, *string) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(out)
		bind(c, fs)
		file := fs.String("config", "", "YAML `file` of settings, keys as in [brackets] after each flag; unknown keys are errors; flags given on the command line win over it")
		fs.Bool("version", false, "print the version and commit to stdout, then exit")
		if usage != nil {
			fs.Usage = func() { usage(fs) }
		}
		return fs, file
	}
	c := defaults()
	fs, file := newFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if v := fs.Lookup("version"); v != nil && v.Value.String() == "true" {
		fmt.Fprintln(os.Stdout, buildinfo.String(name))
		return c, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *file == "" {
		return c, nil
	}
	// Start again from the defaults with the file on top, then parse the
	// same arguments once more: exactly the flags given explicitly land
	// over the file (a list flag replaces the file's list).
	c = defaults()
	if err := ReadFile(*file, &c); err != nil {
		return c, err
	}
	fs, _ = newFlags(&c, io.Discard)
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("flags over --config %s: %w", *file, err)
	}
	return c, nil
}

// ReadFile decodes the YAML file at path onto dst (a pointer to a struct
// with json tags): keys absent from the file keep dst's values, unknown
// keys are errors (a typo must not fall back to a default silently), and
// time.Duration fields take Go duration strings such as "30s".
func ReadFile(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := decode(data, dst); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

func decode(data []byte, dst any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return err
	}
	if tree == nil { // an empty file sets nothing
		return nil
	}
	if _, ok := tree.(map[string]any); !ok {
		return fmt.Errorf("want a YAML mapping of `key: value` lines, not %s", describe(tree))
	}
	if err := walk(tree, reflect.TypeOf(dst).Elem(), ""); err != nil {
		return err
	}
	if js, err = json.Marshal(tree); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields() // walk found them first, with their path
	var te *json.UnmarshalTypeError
	if err := dec.Decode(dst); errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("key %s: value %s: want %s", te.Field, describe(lookup(tree, te.Field)), te.Type)
	} else if err != nil {
		return err
	}
	return nil
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// walk checks the decoded JSON tree v against type t before encoding/json
// decodes it: every key must be a json name of t exactly (encoding/json
// alone would take "cachesize" for cacheSize), and a string that lands
// on a time.Duration is rewritten into nanoseconds, which encoding/json
// accepts. key is v's dotted path, for errors.
func walk(v any, t reflect.Type, key string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // decodes itself (a resource.Quantity, say)
	}
	switch x := v.(type) {
	case []any:
		if t.Kind() == reflect.Slice {
			for _, e := range x {
				if err := walk(e, t.Elem(), key); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		switch t.Kind() {
		case reflect.Map:
			for k, e := range x {
				if err := walk(e, t.Elem(), join(key, k)); err != nil {
					return err
				}
			}
		case reflect.Struct:
			fields := jsonFields(t, map[string]reflect.Type{})
			for k, e := range x {
				ft, ok := fields[k]
				switch {
				case !ok:
					return fmt.Errorf("unknown key %q", join(key, k))
				case e == nil:
				case ft == durationType:
					s, ok := e.(string)
					d, err := time.ParseDuration(s)
					if !ok || err != nil {
						return fmt.Errorf("key %s: value %s: want a duration such as 30s", join(key, k), describe(e))
					}
					x[k] = int64(d)
				default:
					if err := walk(e, ft, join(key, k)); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// jsonFields adds the json names of struct t's fields, with their types,
// to out, including those of embedded structs without a name of their
// own, as encoding/json sees them.
func jsonFields(t reflect.Type, out map[string]reflect.Type) map[string]reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			jsonFields(f.Type, out)
		case name == "":
			out[f.Name] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// lookup finds the value at a dotted key in the decoded tree, or nil.
func lookup(tree any, key string) any {
	for _, k := range strings.Split(key, ".") {
		m, ok := tree.(map[string]any)
		if !ok {
			return nil
		}
		tree = m[k]
	}
	return tree
}

func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
