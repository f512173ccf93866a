package deploy

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/quarryfleet/quarry/pkg/config"
)

var durationType = reflect.TypeFor[time.Duration]()

// ExampleYAML renders cfg, which holds the defaults, as a YAML file in
// which every setting appears with its default value and, above it, its
// help text, command-line flag and environment variable. Loading the
// result with pkg/config gives back the defaults.
func ExampleYAML(cfg any, header string) ([]byte, error) {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	v := reflect.ValueOf(cfg)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("example config: want a struct, got %s", v.Kind())
	}
	if err := writeStruct(&b, v, "", 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func writeStruct(b *bytes.Buffer, v reflect.Value, prefix string, depth int) error {
	ind := strings.Repeat("  ", depth)
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fv := v.Field(i)
		b.WriteString("\n")
		comment(b, ind, f, path)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			b.WriteString(ind + name + ":\n")
			if err := writeStruct(b, fv, path, depth+1); err != nil {
				return err
			}
			continue
		}
		val, err := leaf(fv)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if !strings.Contains(val, "\n") {
			b.WriteString(ind + name + ": " + val + "\n")
			continue
		}
		b.WriteString(ind + name + ":\n")
		for _, line := range strings.Split(strings.TrimRight(val, "\n"), "\n") {
			b.WriteString(ind + "  " + line + "\n")
		}
	}
	return nil
}

func comment(b *bytes.Buffer, ind string, f reflect.StructField, path string) {
	help := f.Tag.Get("help")
	var where []string
	if fl := f.Tag.Get("flag"); fl != "" {
		where = append(where, "flag --"+fl)
	}
	if f.Type.Kind() != reflect.Struct || f.Type == durationType {
		where = append(where, "env "+config.EnvName(path))
	}
	if len(where) > 0 {
		if help != "" {
			help += " "
		}
		help += "(" + strings.Join(where, ", ") + ")"
	}
	if help == "" {
		return
	}
	// Wrap at about 78 columns.
	line := ind + "#"
	for _, w := range strings.Fields(help) {
		if len(line)+1+len(w) > 78 && line != ind+"#" {
			b.WriteString(line + "\n")
			line = ind + "#"
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}

func leaf(v reflect.Value) (string, error) {
	if v.Type() == durationType {
		return v.Interface().(time.Duration).String(), nil
	}
	if (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.Len() == 0 {
		if v.Kind() == reflect.Slice {
			return "[]", nil
		}
		return "{}", nil
	}
	out, err := yaml.Marshal(v.Interface())
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(out), "\n")
	if v.Kind() == reflect.Slice || v.Kind() == reflect.Map || v.Kind() == reflect.Struct {
		return s + "\n", nil
	}
	return s, nil
}
