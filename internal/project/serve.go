package project

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Server is how a repository's dev server is started, listening on Port inside the container.
type Server struct {
	// Source is the file the rule matched ("" for the fallback).
	Source string `json:"source"`
	Run    string `json:"run"`
	Port   int    `json:"port"`
	// Dir is the directory it runs in, relative to the repository ("" for its root).
	Dir string `json:"dir,omitempty"`
}

// DefaultPort is where dev servers listen unless --port says otherwise (seed 001).
const DefaultPort = 8000

// DetectServer decides how to serve the repository at dir (or its subdirectory sub), seed
// 001's order: Laravel's artisan, package.json's dev then start script, composer.json,
// go.mod with main.go, Django's manage.py, and python3 -m http.server as the fallback.
func DetectServer(dir, sub string, port int) (*Server, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("port %d: a port is 1-65535", port)
	}
	where, err := Subdir(dir, sub)
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	srv := &Server{Port: port, Dir: sub}
	set, hasPackage, err := scripts(where, "package.json")
	if err != nil {
		return nil, err
	}
	_, hasComposer, err := scripts(where, "composer.json")
	if err != nil {
		return nil, err
	}
	switch {
	case exists(where, "artisan"):
		srv.Source, srv.Run = "artisan", "php artisan octane:start --host=0.0.0.0 --port="+p
	case hasPackage && set["dev"]:
		srv.Source, srv.Run = "package.json (scripts.dev)", "npm run dev -- --host 0.0.0.0 --port "+p
	case hasPackage && set["start"]:
		srv.Source, srv.Run = "package.json (scripts.start)", "PORT="+p+" npm start"
	case hasComposer:
		srv.Source, srv.Run = "composer.json", "frankenphp php-server -l :"+p
	case exists(where, "go.mod") && exists(where, "main.go"):
		srv.Source, srv.Run = "go.mod and main.go", "PORT="+p+" go run ."
	case exists(where, "manage.py"):
		srv.Source, srv.Run = "manage.py", "python3 manage.py runserver 0.0.0.0:"+p
	default:
		srv.Source, srv.Run = "", "python3 -m http.server --bind 0.0.0.0 "+p
	}
	return srv, nil
}

// Subdir resolves sub, a directory inside the repository dir: relative, not leaving dir (also
// through symbolic links), and existing.
func Subdir(dir, sub string) (string, error) {
	if sub == "" || sub == "." {
		return dir, nil
	}
	clean := filepath.Clean(sub)
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("--path %s: give a directory inside the repository, relative to it", sub)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, clean))
	if err != nil {
		return "", fmt.Errorf("--path %s: no such directory in %s", sub, dir)
	}
	if !within(root, real) {
		return "", fmt.Errorf("--path %s: leads outside the repository (to %s)", sub, real)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", fmt.Errorf("--path %s: not a directory", sub)
	}
	return filepath.Join(dir, clean), nil
}
