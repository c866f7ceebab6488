// Lint configuration: typescript-eslint's recommended rules over sources, tests and benches.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
      // An assertion's message is an argument: a template with values is built on every call,
      // true or not, and that cost showed on the DMA path. Build it only on failure.
      "no-restricted-syntax": [
        "error",
        {
          selector: "CallExpression[callee.name='assert'][arguments.0.type!='Literal'] > TemplateLiteral[expressions.length>0]",
          message: "build the message only on failure: if (!(cond)) assert(false, `...`)",
        },
      ],
    },
  },
);
