package yamlschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits that keep hostile input (alias bombs, deep nesting) cheap to reject.
const (
	maxNodes = 100_000
	maxDepth = 64
)

// Kind names the sort of document in messages and says how to start one.
type Kind struct {
	Name    string // "profile", "test file"
	Empty   string // what to do about an empty file
	Missing string // what to do about a missing file
}

// Location is where a value sits in the YAML source.
type Location struct {
	Line    int    // line of the value
	KeyLine int    // line of its key, for mapping entries (else = Line)
	Field   string // display path: spec.mounts[2].source
	// Text is a scalar's text as written (1.20 stays 1.20, 0755 stays 0755), for values a
	// reader wants as a string whatever YAML makes of them.
	Text string
}

// Tree is a YAML document converted to JSON-like values (map[string]any, []any, string,
// json.Number, bool, nil), with every value's location indexed by its JSON pointer.
type Tree struct {
	Root  any
	index map[string]Location
	nodes int
	errs  *Error
	kind  Kind
}

// Read converts the single YAML document in data to a Tree, adding a located problem to errs
// for anything that is not plain YAML (more than one document, tags, duplicate keys, alias
// bombs). It returns nil when nothing usable came out, and never panics.
func Read(data []byte, kind Kind, errs *Error) (t *Tree) {
	defer func() {
		if r := recover(); r != nil {
			errs.Problems = nil
			errs.Add(0, "", "cannot be parsed as YAML (the parser failed: %v)", r)
			t = nil
		}
	}()
	doc := parseDocument(data, kind, errs)
	if doc == nil {
		return nil
	}
	t = &Tree{index: map[string]Location{}, errs: errs, kind: kind}
	t.index[""] = Location{Line: 1, KeyLine: 1}
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	t.Root = t.value(n, "", "", 0, n.Line)
	if len(errs.Problems) > 0 {
		return nil
	}
	return t
}

// parseDocument returns the single YAML document in data, or nil after adding a problem.
func parseDocument(data []byte, kind Kind, errs *Error) *yaml.Node {
	if len(bytes.TrimSpace(data)) == 0 {
		errs.Add(0, "", "is empty; %s", kind.Empty)
		return nil
	}
	if !utf8.Valid(data) {
		errs.Add(0, "", "is not UTF-8 text; a %s is a YAML file", kind.Name)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		errs.Add(0, "", "holds no YAML document (only comments); %s", kind.Empty)
		return nil
	} else if err != nil {
		line, msg := yamlErrorLine(err)
		errs.Add(line, "", "invalid YAML: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs.Add(extra.Line, "", "holds more than one YAML document; keep one %s per file", kind.Name)
		return nil
	} else if !errors.Is(err, io.EOF) {
		line, msg := yamlErrorLine(err)
		errs.Add(line, "", "invalid YAML: %s", msg)
		return nil
	}
	return &doc
}

// yamlErrorLine splits yaml.v3's "yaml: line N: msg" into its parts.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		if i := strings.IndexByte(msg, ':'); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
	}
	return line, msg
}

// ReadFile reads a document of at most max bytes, refusing directories; its errors are *Error
// like every other problem with the document.
func ReadFile(path string, max int64, kind Kind) ([]byte, error) {
	errs := &Error{File: path}
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs.Add(0, "", "no such file; %s", kind.Missing)
		case errors.Is(err, fs.ErrPermission):
			errs.Add(0, "", "cannot read the file (permission denied); check its owner and mode")
		default:
			errs.Add(0, "", "cannot read the file: %v", err)
		}
		return nil, errs
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		errs.Add(0, "", "is a directory; give the path of a %s .yaml file", kind.Name)
		return nil, errs
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		errs.Add(0, "", "cannot read the file: %v", err)
		return nil, errs
	}
	if int64(len(data)) > max {
		errs.Add(0, "", "is larger than %d KiB; a %s is a short YAML file", max>>10, kind.Name)
		return nil, errs
	}
	return data, nil
}

func (t *Tree) value(n *yaml.Node, ptr, field string, depth, keyLine int) any {
	t.nodes++
	if t.nodes > maxNodes || depth > maxDepth {
		if t.nodes == maxNodes+1 || depth == maxDepth+1 {
			t.errs.Add(n.Line, field, "document is too large or too deeply nested (aliases expand to more than %d values or %d levels)", maxNodes, maxDepth)
		}
		return nil
	}
	t.index[ptr] = Location{Line: n.Line, KeyLine: keyLine, Field: field}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil
		}
		return t.value(n.Alias, ptr, field, depth+1, keyLine)
	case yaml.MappingNode:
		return t.mapping(n, ptr, field, depth)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, t.value(c, fmt.Sprintf("%s/%d", ptr, i), fmt.Sprintf("%s[%d]", field, i), depth+1, c.Line))
		}
		return out
	case yaml.ScalarNode:
		loc := t.index[ptr]
		loc.Text = n.Value
		t.index[ptr] = loc
		return t.scalar(n, field)
	}
	return nil
}

func (t *Tree) mapping(n *yaml.Node, ptr, field string, depth int) map[string]any {
	out := make(map[string]any, len(n.Content)/2)
	firstSeen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!int" && k.ShortTag() != "!!bool") {
			t.errs.Add(k.Line, field, "field names must be plain words, not a %s", describeNode(k))
			continue
		}
		name := k.Value
		child := joinField(field, name)
		if first, dup := firstSeen[name]; dup {
			t.errs.Add(k.Line, child, "is set twice (first on line %d); keep one", first)
			continue
		}
		firstSeen[name] = k.Line
		out[name] = t.value(v, ptr+"/"+escapePointer(name), child, depth+1, k.Line)
	}
	return out
}

func (t *Tree) scalar(n *yaml.Node, field string) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return n.Value
		}
		return b
	case "!!int":
		if i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		return t.float(n, field)
	case "!!float":
		return t.float(n, field)
	case "!!str", "!!timestamp", "!!binary":
		return n.Value
	}
	t.errs.Add(n.Line, field, "uses the YAML tag %s, which a %s does not support; remove the tag", n.Tag, t.kind.Name)
	return n.Value
}

func (t *Tree) float(n *yaml.Node, field string) any {
	var f float64
	if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		t.errs.Add(n.Line, field, "must be a finite number, not %q", n.Value)
		return nil
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// locate returns the Location of the value at a JSON pointer, or of its nearest ancestor.
func (t *Tree) Locate(ptr string) Location {
	for {
		if loc, ok := t.index[ptr]; ok {
			return loc
		}
		i := strings.LastIndexByte(ptr, '/')
		if i < 0 {
			return Location{Line: 1, KeyLine: 1}
		}
		ptr = ptr[:i]
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return strings.TrimPrefix(n.ShortTag(), "!!") + " value"
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// pointerOf turns the validator's instance-Location tokens into a JSON pointer.
func pointerOf(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(tok))
	}
	return b.String()
}
