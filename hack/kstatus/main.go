// Command kstatus prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status),
// which Flux and kpt use to wait for applied objects, computes for each object it is given.
//
// Input (stdin): a JSON array of Kubernetes objects. Output (stdout): a JSON array with, for each
// object in order, {"name": metadata.name, "status": "Current"|"InProgress"|"Failed"|...,
// "message": the library's message}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	// Numbers as int64 where they are integers, as the API machinery's own decoders give them.
	var objects []map[string]interface{}
	input, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = utiljson.Unmarshal(input, &objects)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading a JSON array of objects from stdin: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for _, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		computed, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", u.GetName(), err)
			os.Exit(1)
		}
		results = append(results, result{u.GetName(), computed.Status.String(), computed.Message})
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}
