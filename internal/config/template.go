package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"text/template"
)

//go:embed template.yaml
var templateText string

var fileTemplate = template.Must(template.New(FileName).Parse(templateText))

// Template renders a commented openagent.yaml for a new agent. Providers
// are chosen from the environment: a real provider when its API key variable
// is set and not empty (referenced as ${VAR}, never copied into the file), else echo, so a
// fresh agent works offline.
func Template(name string, lookup func(string) (string, bool)) ([]byte, error) {
	data := struct {
		Name         string
		DefaultModel string
		Providers    []Provider
		Models       []Model
	}{Name: name, DefaultModel: "echo"}
	if v, ok := lookup("OPENAI_API_KEY"); ok && v != "" {
		data.Providers = append(data.Providers, Provider{ID: "openai", Kind: "openai", BaseURL: "https://api.openai.com/v1", APIKey: "${OPENAI_API_KEY}"})
		data.Models = append(data.Models, Model{ID: "gpt-4o-mini", Provider: "openai", InputPricePerMTok: 0.15, OutputPricePerMTok: 0.6})
		data.DefaultModel = "gpt-4o-mini"
	}
	if v, ok := lookup("ANTHROPIC_API_KEY"); ok && v != "" {
		data.Providers = append(data.Providers, Provider{ID: "anthropic", Kind: "anthropic", APIKey: "${ANTHROPIC_API_KEY}"})
		data.Models = append(data.Models, Model{ID: "claude-sonnet", Provider: "anthropic", Name: "claude-sonnet-4-5", InputPricePerMTok: 3, OutputPricePerMTok: 15})
		if data.DefaultModel == "echo" {
			data.DefaultModel = "claude-sonnet"
		}
	}
	data.Providers = append(data.Providers, Provider{ID: "echo", Kind: "echo"})
	data.Models = append(data.Models, Model{ID: "echo", Provider: "echo"})
	var buf bytes.Buffer
	if err := fileTemplate.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render config template: %w", err)
	}
	// The template must always produce a valid file.
	if _, err := Parse(FileName, buf.Bytes(), lookup); err != nil {
		return nil, fmt.Errorf("config template is invalid: %w", err)
	}
	return buf.Bytes(), nil
}
