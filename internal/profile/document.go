package profile

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Document is a valid profile's YAML, editable with its comments and order kept, for
// rendering examples into concrete profiles.
type Document struct {
	name string
	root *yaml.Node // the top-level mapping
}

// ParseDocument validates data like Parse and returns it both as an editable document and
// as a Profile (paths unresolved).
func ParseDocument(name string, data []byte) (*Document, *Profile, error) {
	p, err := Parse(name, data)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil, nil, fmt.Errorf("%s: re-read YAML: %v", name, err)
	}
	return &Document{name: name, root: doc.Content[0]}, p, nil
}

// SetString sets the scalar at path (mapping keys), creating mappings on the way.
func (d *Document) SetString(value string, path ...string) {
	n := d.root
	for i, key := range path {
		child := lookup(n, key)
		if child == nil {
			kind := yaml.MappingNode
			if i == len(path)-1 {
				kind = yaml.ScalarNode
			}
			child = &yaml.Node{Kind: kind}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, child)
		}
		n = child
	}
	n.Kind, n.Tag, n.Value, n.Style, n.Content = yaml.ScalarNode, "!!str", value, 0, nil
}

// SetValue sets the value at path (mapping keys) to v, encoded as YAML (a list, a mapping),
// creating mappings on the way.
func (d *Document) SetValue(v any, path ...string) error {
	var value yaml.Node
	if err := value.Encode(v); err != nil {
		return fmt.Errorf("render %s: %w", d.name, err)
	}
	d.SetString("", path...) // makes the mappings on the way and the key
	n := d.root
	for _, key := range path {
		n = lookup(n, key)
	}
	*n = value
	return nil
}

// Remove removes the key at path, when it is there.
func (d *Document) Remove(path ...string) {
	parent := d.root
	for _, key := range path[:len(path)-1] {
		if parent = lookup(parent, key); parent == nil {
			return
		}
	}
	removeKey(parent, path[len(path)-1])
}

// FilterList keeps the items of the list at path for which keep returns true, and removes
// the list's key when nothing is left.
func (d *Document) FilterList(keep func(i int) bool, path ...string) {
	parent := d.root
	for _, key := range path[:len(path)-1] {
		if parent = lookup(parent, key); parent == nil {
			return
		}
	}
	last := path[len(path)-1]
	list := lookup(parent, last)
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	var kept []*yaml.Node
	for i, item := range list.Content {
		if keep(i) {
			kept = append(kept, item)
		}
	}
	list.Content = kept
	if len(kept) == 0 {
		removeKey(parent, last)
	}
}

// Bytes renders the document, re-validating it so that an edit can never produce an
// invalid profile.
func (d *Document) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{d.root}}); err != nil {
		return nil, fmt.Errorf("render %s: %w", d.name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render %s: %w", d.name, err)
	}
	if _, err := Parse(d.name, buf.Bytes()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func removeKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
