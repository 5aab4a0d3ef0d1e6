package yamlschema

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schema is a compiled JSON schema that reports its failures at the YAML lines they concern,
// in words: unknown fields with the allowed names and a spelling suggestion, missing fields,
// wrong types and values, and a rule's own x-message where the schema gives one.
type Schema struct {
	schema *jsonschema.Schema
	doc    any // the raw schema, for x-message and the list of allowed fields
}

// Compile compiles the JSON schema raw, known by url.
func Compile(url string, raw []byte) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", url, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", url, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", url, err)
	}
	return &Schema{schema: s, doc: doc}, nil
}

// English is the printer for the validator's own messages (LocalizedString(nil) panics in v6).
var english = message.NewPrinter(language.English)

// Validate checks the tree against the schema and adds one located problem per failed
// constraint.
func (c *Schema) Validate(t *Tree, errs *Error) {
	err := c.schema.Validate(t.Root)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return
	}
	for _, leaf := range leaves(ve) {
		c.describe(t, leaf, errs)
	}
}

func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

func (c *Schema) describe(t *Tree, e *jsonschema.ValidationError, errs *Error) {
	ptr := pointerOf(e.InstanceLocation)
	loc := t.Locate(ptr)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		c.unknownFields(t, ptr, e.SchemaURL, k.Properties, errs)
	case *kind.FalseSchema:
		// unevaluatedProperties: false reports each extra field as a failed "false" schema.
		parent, _, _ := strings.Cut(e.SchemaURL, "/unevaluatedProperties")
		tokens := e.InstanceLocation
		if len(tokens) == 0 {
			errs.Add(loc.Line, loc.Field, "is not allowed here")
			return
		}
		name := tokens[len(tokens)-1]
		if slices.Contains(c.allowedFields(parent), name) {
			return // a known field that failed its own check, reported there (2020-12 drops its annotation)
		}
		c.unknownFields(t, pointerOf(tokens[:len(tokens)-1]), parent, []string{name}, errs)
	case *kind.Required:
		for _, m := range k.Missing {
			errs.Add(loc.KeyLine, joinField(loc.Field, m), "is required; add it%s", under(loc.Field))
		}
	case *kind.Type:
		errs.Add(loc.Line, loc.Field, "must be %s, not %s", article(strings.Join(k.Want, " or ")), article(k.Got))
	case *kind.Enum:
		errs.Add(loc.Line, loc.Field, "must be one of %s; got %s", joinWant(k.Want), display(k.Got))
	case *kind.Minimum:
		errs.Add(loc.Line, loc.Field, "must be at least %s; got %s", rat(k.Want), rat(k.Got))
	case *kind.Maximum:
		errs.Add(loc.Line, loc.Field, "must be at most %s; got %s", rat(k.Want), rat(k.Got))
	case *kind.ExclusiveMinimum:
		errs.Add(loc.Line, loc.Field, "must be greater than %s; got %s", rat(k.Want), rat(k.Got))
	default:
		msg := c.message(e.SchemaURL)
		if msg == "" {
			msg = e.ErrorKind.LocalizedString(english)
		}
		errs.Add(loc.Line, loc.Field, "%s", msg)
	}
}

// unknownFields reports fields the schema does not allow, each at its own line, with the
// allowed names and a spelling suggestion.
func (c *Schema) unknownFields(t *Tree, ptr, schemaURL string, names []string, errs *Error) {
	allowed := c.allowedFields(schemaURL)
	for _, name := range names {
		loc := t.Locate(ptr + "/" + escapePointer(name))
		msg := "unknown field"
		if s := suggest(name, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		if len(allowed) > 0 {
			msg += "; allowed here: " + strings.Join(allowed, ", ")
		}
		errs.Add(loc.KeyLine, loc.Field, "%s", msg)
	}
}

// schemaAt resolves a compiled-schema URL (…schema.json#/json/pointer) in the raw document.
func (c *Schema) schemaAt(schemaURL string) map[string]any {
	frag := ""
	if i := strings.IndexByte(schemaURL, '#'); i >= 0 {
		frag = schemaURL[i+1:]
	}
	if u, err := url.PathUnescape(frag); err == nil {
		frag = u
	}
	node := c.doc
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		node = m[tok]
	}
	m, _ := node.(map[string]any)
	return m
}

func (c *Schema) message(schemaURL string) string {
	msg, _ := c.schemaAt(schemaURL)["x-message"].(string)
	return msg
}

// allowedFields lists the properties a schema object accepts, including those of a $ref it
// extends (the tool definitions use $ref + unevaluatedProperties).
func (c *Schema) allowedFields(schemaURL string) []string {
	s := c.schemaAt(schemaURL)
	var names []string
	add := func(s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for n := range props {
			names = append(names, n)
		}
	}
	add(s)
	if ref, ok := s["$ref"].(string); ok {
		add(c.schemaAt(ref))
	}
	sort.Strings(names)
	return names
}

// rat prints the validator's exact numbers as people write them.
func rat(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func under(field string) string {
	if field == "" {
		return " at the top level"
	}
	return " under " + field
}

func article(s string) string {
	switch {
	case s == "null":
		return "empty"
	case s == "":
		return s
	case strings.ContainsRune("aeiou", rune(s[0])):
		return "an " + s
	}
	return "a " + s
}

func joinWant(want []any) string {
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = fmt.Sprint(w)
	}
	return strings.Join(parts, ", ")
}

func display(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case nil:
		return "nothing"
	}
	return fmt.Sprint(v)
}

// suggest returns the allowed name closest to name when it is a plausible misspelling.
func suggest(name string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := distance(strings.ToLower(name), strings.ToLower(a)); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
