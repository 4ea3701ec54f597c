package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	yaml "go.yaml.in/yaml/v3"
)

// origin is where a value came from.
type origin struct {
	source string
	line   int
}

func (o origin) String() string {
	if o.line > 0 {
		return o.source + ":" + strconv.Itoa(o.line)
	}
	return o.source
}

// setting is one checked value from one source.
type setting struct {
	key   string
	value any // the field's parse type: string, int64, bool, time.Duration
	at    origin
}

// input is one configuration file's content.
type input struct {
	path string
	data []byte
}

// problems collects Problems.
type problems []Problem

func (ps *problems) add(src string, line int, key, format string, args ...any) {
	*ps = append(*ps, Problem{Source: src, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func load(opts Options) (*Loaded, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ
	}
	res := &Loaded{}
	var ps problems

	main, named := opts.Path, "--config"
	if main == "" {
		if p, ok := lookup(EnvConfig); ok && p != "" {
			main, named = p, EnvConfig
		} else {
			main, named = defaultPath, ""
		}
	}
	var inputs []input
	switch data, err := os.ReadFile(main); {
	case err == nil:
		inputs = append(inputs, input{main, data})
	case errors.Is(err, fs.ErrNotExist) && named == "":
		res.Warnings = append(res.Warnings, main+": does not exist; using the built-in defaults")
	case errors.Is(err, fs.ErrNotExist):
		ps.add(main, 0, "", "does not exist (named by %s)", named)
	default:
		ps.add(main, 0, "", "cannot read: %v", unwrapPath(err))
	}

	dir := filepath.Join(filepath.Dir(main), DropInDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		ps.add(dir, 0, "", "cannot read the drop-in directory: %v", unwrapPath(err))
	}
	for _, e := range entries { // sorted by name
		// Hidden files are editors' lock and swap files (".#50-x.yaml").
		if !strings.HasSuffix(e.Name(), ".yaml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			ps.add(p, 0, "", "cannot read: %v", unwrapPath(err))
			continue
		}
		inputs = append(inputs, input{p, data})
	}
	for _, in := range inputs {
		res.Files = append(res.Files, in.path)
	}

	var env []setting
	var eps problems // environment and flags, reported after the files
	for _, f := range schema {
		name := f.envName()
		s, ok := lookup(name)
		if !ok {
			continue
		}
		src := "env " + name
		v, msg := f.parseString(s)
		if msg == "" {
			msg = f.checkValue(v)
		}
		if msg != "" {
			eps.add(src, 0, f.key, "%s", msg)
			continue
		}
		env = append(env, setting{f.key, v, origin{source: src}})
	}
	res.Warnings = append(res.Warnings, envWarnings(environ())...)

	var flags []setting
	for _, o := range opts.Overrides {
		f, ok := byKey[o.Key]
		if !ok {
			msg := "unknown key"
			if sec, leaf, _ := strings.Cut(o.Key, "."); suggestKey(sec, leaf) != "" {
				msg += "; did you mean " + suggestKey(sec, leaf) + "?"
			}
			eps.add(o.Source, 0, o.Key, "%s", msg)
			continue
		}
		v, msg := f.parseString(o.Value)
		if msg == "" {
			msg = f.checkValue(v)
		}
		if msg != "" {
			eps.add(o.Source, 0, o.Key, "%s", msg)
			continue
		}
		flags = append(flags, setting{f.key, v, origin{source: o.Source}})
	}

	cfg, at, fps, cps := build(inputs, env, flags)
	ps = append(append(append(ps, fps...), eps...), cps...)
	if len(ps) > 0 {
		return nil, &Error{Problems: ps}
	}
	res.Config = cfg
	res.Sources = map[string]string{}
	for k, o := range at {
		res.Sources[k] = o.String()
	}
	return res, nil
}

// unwrapPath drops the path from a *fs.PathError: the Problem names it.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// envWarnings flags KECHOD_* variables that set nothing: most likely typos.
func envWarnings(environ []string) []string {
	known := map[string]bool{EnvConfig: true}
	var names []string
	for _, f := range schema {
		known[f.envName()] = true
		names = append(names, f.envName())
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || known[name] {
			continue
		}
		w := "env " + name + ": not a kechod setting, ignored"
		if n := nearest(name, names); n != "" {
			w += "; did you mean " + n + "?"
		}
		out = append(out, w)
	}
	return out
}

// build checks every file, merges the files, the environment and the
// flags over the defaults (in that order, with viper) and validates the
// result. Values that fail their checks are reported and left out.
// It returns the problems of the files and those of the merged result.
func build(inputs []input, env, flags []setting) (c Config, at map[string]origin, ps, cross problems) {
	v := viper.New()
	def := Defaults()
	at = map[string]origin{}
	for _, f := range schema {
		v.SetDefault(f.key, f.get(&def))
		at[f.key] = origin{source: "default"}
	}
	for _, in := range inputs {
		sets, fps := parseFile(in.path, in.data)
		ps = append(ps, fps...)
		if len(sets) == 0 {
			continue
		}
		m := map[string]any{}
		for _, s := range sets {
			sec, leaf, _ := strings.Cut(s.key, ".")
			if m[sec] == nil {
				m[sec] = map[string]any{}
			}
			m[sec].(map[string]any)[leaf] = byKey[s.key].typed(s.value)
			at[s.key] = s.at
		}
		if err := v.MergeConfigMap(m); err != nil {
			ps.add(in.path, 0, "", "cannot merge: %v", err)
		}
	}
	// viper's Set layer is above files and defaults; the flags are set
	// after the environment and so take precedence over it.
	for _, s := range append(append([]setting(nil), env...), flags...) {
		v.Set(s.key, byKey[s.key].typed(s.value))
		at[s.key] = s.at
	}

	if err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = false
		dc.ErrorUnused = true
	}); err != nil {
		// Every value was checked and typed above; this is a bug.
		cross.add("", 0, "", "internal error merging the configuration: %v", err)
		return c, at, ps, cross
	}
	for _, p := range crossCheck(c) {
		// Blame the timeout, unless only the interval was set: then the
		// interval is what went wrong.
		to, iv := at["health.timeout"], at["health.interval"]
		if to.source == "default" && iv.source != "default" {
			p = Problem{Source: iv.source, Line: iv.line, Key: "health.interval",
				Msg: "want a duration longer than health.timeout (" + c.Health.Timeout.String() + ", the default), got " + c.Health.Interval.String()}
		} else {
			p.Source, p.Line = to.source, to.line
			p.Msg += " (" + c.Health.Interval.String() + ", from " + iv.String() + ")"
		}
		cross = append(cross, p)
	}
	return c, at, ps, cross
}

// crossCheck finds problems between keys of an otherwise valid Config.
func crossCheck(c Config) []Problem {
	var out []Problem
	if c.Health.Timeout > 0 && c.Health.Interval > 0 && c.Health.Timeout >= c.Health.Interval {
		out = append(out, Problem{Key: "health.timeout",
			Msg: "want a duration shorter than health.interval, got " + c.Health.Timeout.String()})
	}
	return out
}

func validate(c Config) error {
	var ps problems
	for _, f := range schema {
		v := f.get(&c)
		switch x := v.(type) {
		case int:
			v = int64(x)
		case uint32:
			v = int64(x)
		}
		if msg := f.checkValue(v); msg != "" {
			ps.add("", 0, f.key, "%s", msg)
		}
	}
	if len(ps) == 0 {
		ps = append(ps, crossCheck(c)...)
	}
	if len(ps) > 0 {
		return &Error{Problems: ps}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseFile decodes one file as a YAML node tree and checks it against
// the schema. It returns the settings that passed and the problems.
func parseFile(path string, data []byte) (sets []setting, ps problems) {
	defer func() {
		// The YAML parser must not take kechod down with a crafted file.
		if r := recover(); r != nil {
			sets = nil
			ps.add(path, 0, "", "malformed YAML (the parser failed: %v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, msg := 0, err.Error()
			if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = m[2]
			} else {
				msg = strings.TrimPrefix(msg, "yaml: ")
			}
			ps.add(path, line, "", "malformed YAML: %s", msg)
			return nil, ps
		}
		docs = append(docs, &n)
	}
	if len(docs) == 0 {
		return nil, nil // empty or only comments: no settings
	}
	if len(docs) > 1 {
		ps.add(path, docs[1].Line, "", "more than one YAML document; put all settings in one")
		return nil, ps
	}
	root := docs[0]
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		ps.add(path, root.Line, "", "want a mapping of sections (%s), got %s", strings.Join(sections, ", "), describe(root))
		return nil, ps
	}
	seenSec := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], deref(root.Content[i+1])
		sec, ok := keyName(path, k, "", &ps)
		if !ok {
			continue
		}
		if first, dup := seenSec[sec]; dup {
			ps.add(path, k.Line, sec, "duplicate section (first at line %d)", first)
			continue
		}
		seenSec[sec] = k.Line
		if !isSection(sec) {
			msg := "unknown section; known sections are " + strings.Join(sections, ", ")
			if s := suggestKey(sec, ""); s != "" {
				msg = "unknown section; did you mean " + s + "?"
			}
			ps.add(path, k.Line, sec, "%s", msg)
			continue
		}
		if isNull(val) {
			continue // "health:" with nothing under it sets nothing
		}
		if val.Kind != yaml.MappingNode {
			ps.add(path, val.Line, sec, "want a mapping of %s keys, got %s", sec, describe(val))
			continue
		}
		seen := map[string]int{}
		for j := 0; j+1 < len(val.Content); j += 2 {
			kk, vv := val.Content[j], deref(val.Content[j+1])
			leaf, ok := keyName(path, kk, sec+".", &ps)
			if !ok {
				continue
			}
			key := sec + "." + leaf
			if first, dup := seen[leaf]; dup {
				ps.add(path, kk.Line, key, "duplicate key (first at line %d)", first)
				continue
			}
			seen[leaf] = kk.Line
			f, known := byKey[key]
			if !known {
				msg := "unknown key"
				if s := suggestKey(sec, leaf); s != "" {
					msg += "; did you mean " + s + "?"
				}
				ps.add(path, kk.Line, key, "%s", msg)
				continue
			}
			value, msg := f.parseNode(vv)
			if msg == "" {
				msg = f.checkValue(value)
			}
			if msg != "" {
				ps.add(path, vv.Line, key, "%s", msg)
				continue
			}
			sets = append(sets, setting{key, value, origin{path, vv.Line}})
		}
	}
	return sets, ps
}

// keyName returns a mapping key's name, reporting keys that are not plain
// names.
func keyName(path string, k *yaml.Node, prefix string, ps *problems) (string, bool) {
	k = deref(k)
	if k.Kind != yaml.ScalarNode {
		ps.add(path, k.Line, strings.TrimSuffix(prefix, "."), "want a plain key name, got %s", describe(k))
		return "", false
	}
	if k.Tag == "!!merge" {
		ps.add(path, k.Line, strings.TrimSuffix(prefix, "."), "YAML merge keys (<<) are not supported; write the keys out")
		return "", false
	}
	return k.Value, true
}

func isSection(s string) bool {
	for _, x := range sections {
		if x == s {
			return true
		}
	}
	return false
}

// deref follows aliases (bounded: the schema is two levels deep).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's type for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "no value"
		}
		return quoteScalar(n)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// quoteScalar shows a scalar as written: strings quoted, others plain.
func quoteScalar(n *yaml.Node) string {
	if n.ShortTag() == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// parseNode parses a YAML value for f, strictly by YAML type: 5555 is an
// integer, "5555" a string; true is a boolean, yes a string.
func (f *field) parseNode(n *yaml.Node) (any, string) {
	if n.Kind != yaml.ScalarNode {
		return nil, "want " + f.want + ", got " + describe(n)
	}
	tag := n.ShortTag()
	if tag == "!!null" {
		if f.kind == kString {
			return "", ""
		}
		return nil, "has no value; want " + f.want
	}
	switch f.kind {
	case kString:
		return n.Value, ""
	case kInt:
		if tag == "!!int" {
			var x int64
			if err := n.Decode(&x); err == nil {
				return x, ""
			}
		}
		return nil, "want " + f.want + ", got " + quoteScalar(n)
	case kBool:
		if tag == "!!bool" {
			var b bool
			if err := n.Decode(&b); err == nil {
				return b, ""
			}
		}
		return nil, "want " + f.want + ", got " + quoteScalar(n)
	case kDuration:
		if tag == "!!int" || tag == "!!float" {
			return nil, strconv.Quote(n.Value) + " has no unit; write e.g. " + n.Value + "s (units: ms, s, m, h)"
		}
		if tag != "!!str" {
			return nil, "want " + f.want + ", got " + quoteScalar(n)
		}
		return f.parseDuration(strings.TrimSpace(n.Value), n.Value)
	}
	panic("unreachable")
}

func marshal(c Config, sources map[string]string) []byte {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, sec := range sections {
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range schema {
			if f.section() != sec {
				continue
			}
			var val yaml.Node
			v := f.get(&c)
			if d, ok := v.(time.Duration); ok {
				v = d.String()
			}
			if err := val.Encode(v); err != nil {
				panic(err) // strings, ints and bools always encode
			}
			if s, ok := v.(string); ok && s == "" {
				val.Style = yaml.DoubleQuotedStyle
			}
			if src, ok := sources[f.key]; ok {
				val.LineComment = "# " + src
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.leaf()}, &val)
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: sec}, m)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		panic(err)
	}
	_ = enc.Close()
	return b.Bytes()
}

// defaultPath is DefaultPath; tests point it elsewhere.
var defaultPath = DefaultPath
