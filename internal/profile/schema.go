package profile

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sourceos/sourceosctl/schemas"
)

// compiled is the embedded schema, compiled once. It is derived from embedded bytes only, so
// caching it is a memo of a pure function, not mutable state.
type compiled struct {
	schema *jsonschema.Schema
	doc    any // the raw schema, for x-message and the list of allowed fields
}

var profileSchema = sync.OnceValues(func() (*compiled, error) {
	raw, err := schemas.FS.ReadFile(schemas.ProfileFile)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("embedded profile schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://sourceos.dev/schemas/agent-machine-profile.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("embedded profile schema: %w", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("embedded profile schema: %w", err)
	}
	return &compiled{schema: s, doc: doc}, nil
})

// English is the printer for the validator's own messages (LocalizedString(nil) panics in v6).
var english = message.NewPrinter(language.English)

// validateSchema checks the converted document against the embedded schema and adds one
// located problem per failed constraint.
func validateSchema(t *tree, errs *LoadError) {
	c, err := profileSchema()
	if err != nil {
		errs.add(0, "", "internal error: %v", err)
		return
	}
	err = c.schema.Validate(t.root)
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

func (c *compiled) describe(t *tree, e *jsonschema.ValidationError, errs *LoadError) {
	ptr := pointerOf(e.InstanceLocation)
	loc := t.locate(ptr)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		c.unknownFields(t, ptr, e.SchemaURL, k.Properties, errs)
	case *kind.FalseSchema:
		// unevaluatedProperties: false reports each extra field as a failed "false" schema.
		parent, _, _ := strings.Cut(e.SchemaURL, "/unevaluatedProperties")
		tokens := e.InstanceLocation
		if len(tokens) == 0 {
			errs.add(loc.line, loc.field, "is not allowed here")
			return
		}
		name := tokens[len(tokens)-1]
		if contains(c.allowedFields(parent), name) {
			return // a known field that failed its own check, reported there (2020-12 drops its annotation)
		}
		c.unknownFields(t, pointerOf(tokens[:len(tokens)-1]), parent, []string{name}, errs)
	case *kind.Required:
		for _, m := range k.Missing {
			errs.add(loc.keyLine, joinField(loc.field, m), "is required; add it%s", under(loc.field))
		}
	case *kind.Type:
		errs.add(loc.line, loc.field, "must be %s, not %s", article(strings.Join(k.Want, " or ")), article(k.Got))
	case *kind.Enum:
		errs.add(loc.line, loc.field, "must be one of %s; got %s", joinWant(k.Want), display(k.Got))
	case *kind.Minimum:
		errs.add(loc.line, loc.field, "must be at least %s; got %s", rat(k.Want), rat(k.Got))
	case *kind.Maximum:
		errs.add(loc.line, loc.field, "must be at most %s; got %s", rat(k.Want), rat(k.Got))
	case *kind.ExclusiveMinimum:
		errs.add(loc.line, loc.field, "must be greater than %s; got %s", rat(k.Want), rat(k.Got))
	default:
		msg := c.message(e.SchemaURL)
		if msg == "" {
			msg = e.ErrorKind.LocalizedString(english)
		}
		errs.add(loc.line, loc.field, "%s", msg)
	}
}

// unknownFields reports fields the schema does not allow, each at its own line, with the
// allowed names and a spelling suggestion.
func (c *compiled) unknownFields(t *tree, ptr, schemaURL string, names []string, errs *LoadError) {
	allowed := c.allowedFields(schemaURL)
	for _, name := range names {
		loc := t.locate(ptr + "/" + escapePointer(name))
		msg := "unknown field"
		if s := suggest(name, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		if len(allowed) > 0 {
			msg += "; allowed here: " + strings.Join(allowed, ", ")
		}
		errs.add(loc.keyLine, loc.field, "%s", msg)
	}
}

// schemaAt resolves a compiled-schema URL (…schema.json#/json/pointer) in the raw document.
func (c *compiled) schemaAt(schemaURL string) map[string]any {
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

func (c *compiled) message(schemaURL string) string {
	msg, _ := c.schemaAt(schemaURL)["x-message"].(string)
	return msg
}

// allowedFields lists the properties a schema object accepts, including those of a $ref it
// extends (the tool definitions use $ref + unevaluatedProperties).
func (c *compiled) allowedFields(schemaURL string) []string {
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
