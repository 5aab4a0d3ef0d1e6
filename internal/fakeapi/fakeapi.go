// Package fakeapi is a stand-in for the Anthropic and OpenAI APIs in tests: it answers just
// enough for one turn of the real claude and codex CLIs (a streamed message with a fixed
// text) and records every request it receives. It never forwards anything anywhere.
package fakeapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Answer is the text every turn answers with.
const Answer = "FAKE-API-ANSWER-7d1e"

// Request is one request the fake received.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         string
}

// Server is an http.Handler that plays both APIs.
type Server struct {
	mu       sync.Mutex
	requests []Request
}

// Requests returns what reached the server, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Paths lists "METHOD PATH" of every request, for messages.
func (s *Server) Paths() []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)})
	s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/v1/messages"):
		anthropic(w, body)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/responses"):
		responses(w)
	case strings.HasSuffix(r.URL.Path, "/models"):
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[],"models":[]}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}
}

type sse struct {
	w http.ResponseWriter
}

func (s sse) event(name string, data any) {
	b, _ := json.Marshal(data)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, b)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// anthropic answers the Messages API, streamed when the request asks for it.
func anthropic(w http.ResponseWriter, body []byte) {
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(body, &req)
	usage := map[string]int{"input_tokens": 1, "output_tokens": 1}
	msg := map[string]any{"id": "msg_fake", "type": "message", "role": "assistant", "model": req.Model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": usage}
	if !req.Stream {
		msg["content"] = []any{map[string]string{"type": "text", "text": Answer}}
		msg["stop_reason"] = "end_turn"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(msg)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	s := sse{w}
	s.event("message_start", map[string]any{"type": "message_start", "message": msg})
	s.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]string{"type": "text", "text": ""}})
	s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]string{"type": "text_delta", "text": Answer}})
	s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	s.event("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 1}})
	s.event("message_stop", map[string]any{"type": "message_stop"})
}

// responses answers OpenAI's Responses API as a stream: one assistant message, completed.
func responses(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	s := sse{w}
	s.event("response.created", map[string]any{"type": "response.created", "response": map[string]any{"id": "resp_fake"}})
	item := map[string]any{"type": "message", "role": "assistant", "id": "msg_fake",
		"content": []any{map[string]string{"type": "output_text", "text": Answer}}}
	s.event("response.output_item.done", map[string]any{"type": "response.output_item.done", "output_index": 0, "item": item})
	s.event("response.completed", map[string]any{"type": "response.completed", "response": map[string]any{"id": "resp_fake",
		"usage": map[string]any{"input_tokens": 1, "input_tokens_details": nil, "output_tokens": 1, "output_tokens_details": nil, "total_tokens": 2}}})
}
