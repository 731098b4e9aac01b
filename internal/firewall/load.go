package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// maxConfigBytes bounds a tools file.
const maxConfigBytes = 4 << 20

// ParseConfig reads a tools file: a Config as YAML or JSON (JSON is YAML),
// with the field names of its json tags. Unknown fields and repeated keys
// are errors, so a misspelt policy is never silently ignored. The result
// is validated; errors wrap ErrInvalidConfig.
//
//	tools:
//	  read_file:
//	    arguments:
//	      path:
//	        path: {roots: [/srv/data]}
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if len(data) > maxConfigBytes {
		return c, fmt.Errorf("%w: larger than %d bytes", ErrInvalidConfig, maxConfigBytes)
	}
	d := yaml.NewDecoder(bytes.NewReader(data))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	var extra any
	if err := d.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: more than one YAML document", ErrInvalidConfig)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads and parses the tools file at path (see ParseConfig).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("tools file: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("tools file %s: %w", path, err)
	}
	return c, nil
}
