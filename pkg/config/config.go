// Package config loads a settings struct in layers, as operators expect:
// built-in defaults, then a YAML file, then QUARRY_* environment variables,
// then command-line flags. Every error names the setting at fault.
//
// Settings are the struct's fields with a `yaml` tag. A field with a `flag`
// tag also gets a command-line flag, with the `help` tag as its usage text.
// The environment variable is the prefix plus the YAML path in upper case
// with dots as underscores: `market.ttl` is QUARRY_MARKET_TTL.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeFor[time.Duration]()

// RegisterFlags adds a flag for every field of *cfg with a `flag` tag. The
// flag's default shows the current value of the field.
func RegisterFlags(fs *flag.FlagSet, cfg any) {
	walk(reflect.ValueOf(cfg).Elem(), "", func(path string, f reflect.StructField, v reflect.Value) {
		name := f.Tag.Get("flag")
		if name == "" {
			return
		}
		help := f.Tag.Get("help")
		if help == "" {
			help = "setting " + path
		}
		help += " (env " + EnvName(path) + ", yaml " + path + ")"
		fs.Var(&fieldValue{v: v}, name, help)
	})
}

// Load applies the file (if path is not empty), the environment and the
// flags that were set on fs, in that order, onto *cfg which already holds
// the defaults.
func Load(cfg any, path string, fs *flag.FlagSet, environ []string) error {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := DecodeYAML(b, cfg); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var errs []error
	walk(reflect.ValueOf(cfg).Elem(), "", func(path string, _ reflect.StructField, v reflect.Value) {
		name := EnvName(path)
		if s, ok := env[name]; ok {
			if err := setString(v, s); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if fs != nil {
		// Flags were parsed straight into the fields, before the file and
		// environment overwrote them; parse them again so they win.
		var ferrs []error
		fs.Visit(func(fl *flag.Flag) {
			if fv, ok := fl.Value.(*fieldValue); ok {
				if err := fv.Set(fv.last); err != nil {
					ferrs = append(ferrs, fmt.Errorf("flag -%s: %w", fl.Name, err))
				}
			}
		})
		return errors.Join(ferrs...)
	}
	return nil
}

// EnvName is the environment variable for a YAML path.
func EnvName(path string) string {
	return "QUARRY_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// DecodeYAML decodes b onto *cfg field by field, so an unknown key or a
// value of the wrong type is reported with its setting name and line.
func DecodeYAML(b []byte, cfg any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file: defaults stand
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

func decodeNode(n *yaml.Node, v reflect.Value, prefix string) error {
	if n.Kind != yaml.MappingNode {
		where := "top level"
		if prefix != "" {
			where = "setting " + prefix
		}
		return fmt.Errorf("line %d: %s must be a mapping of settings", n.Line, where)
	}
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		path := join(prefix, key.Value)
		idx, ok := fields[key.Value]
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: unknown setting %q", key.Line, path))
			continue
		}
		fv := v.Field(idx)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			if err := decodeNode(val, fv, path); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := decodeLeaf(val, fv); err != nil {
			errs = append(errs, fmt.Errorf("line %d: setting %q: %w", val.Line, path, err))
		}
	}
	return errors.Join(errs...)
}

func decodeLeaf(n *yaml.Node, v reflect.Value) error {
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			return errors.New("want a duration such as 10s or 5m")
		}
		return setString(v, n.Value)
	}
	tmp := reflect.New(v.Type())
	if err := n.Decode(tmp.Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("want %s, got %q", kindName(v.Type()), n.Value)
		}
		return err
	}
	v.Set(tmp.Elem())
	return nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return t.String()
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func walk(v reflect.Value, prefix string, fn func(path string, f reflect.StructField, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := join(prefix, name)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			walk(fv, path, fn)
			continue
		}
		fn(path, f, fv)
	}
}

func setString(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 10s or 5m, got %q", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		v.SetUint(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set %s from text", v.Type())
		}
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot set %s from text", v.Type())
	}
	return nil
}

// fieldValue is a flag.Value bound to a struct field. It remembers the text
// it was given so Load can re-apply it after the file and environment.
type fieldValue struct {
	v    reflect.Value
	last string
}

func (f *fieldValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	if f.v.Type() == durationType {
		return time.Duration(f.v.Int()).String()
	}
	if f.v.Kind() == reflect.Slice {
		s := make([]string, f.v.Len())
		for i := range s {
			s[i] = fmt.Sprint(f.v.Index(i).Interface())
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldValue) Set(s string) error {
	f.last = s
	return setString(f.v, s)
}

func (f *fieldValue) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }
