using System.CommandLine;

namespace SharpLens.Cli.Commands;

/// <summary>
/// <c>sharplens completion bash|zsh|pwsh</c>: prints a shell script that asks sharplens itself for completions
/// through System.CommandLine's <c>[suggest:POSITION]</c> directive, so they always match the declared options.
/// </summary>
internal sealed class CompletionCommand : CliCommand
{
    private static readonly Dictionary<string, string> Scripts = new(StringComparer.Ordinal)
    {
        ["bash"] = """
            # sharplens tab completion for bash: add to ~/.bashrc:  source <(sharplens completion bash)
            _sharplens_complete() {
                local IFS=$'\n'
                COMPREPLY=( $(compgen -W "$(sharplens "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}") )
            }
            complete -o default -F _sharplens_complete sharplens
            """,
        ["zsh"] = """
            # sharplens tab completion for zsh: add to ~/.zshrc:  source <(sharplens completion zsh)
            _sharplens_complete() {
                local -a items
                items=( ${(f)"$(sharplens "[suggest:${CURSOR}]" "${BUFFER}" 2>/dev/null)"} )
                if (( ${#items} )); then compadd -a items; else _files; fi
            }
            compdef _sharplens_complete sharplens
            """,
        ["pwsh"] = """
            # sharplens tab completion for PowerShell: add to $PROFILE:  sharplens completion pwsh | Out-String | Invoke-Expression
            Register-ArgumentCompleter -Native -CommandName sharplens -ScriptBlock {
                param($wordToComplete, $commandAst, $cursorPosition)
                sharplens "[suggest:$cursorPosition]" "$commandAst" 2>$null | ForEach-Object {
                    [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
                }
            }
            """,
    };

    public override string Name => "completion";
    public override string Summary => "Print the tab-completion script for bash, zsh or pwsh.";
    public override string Details => "bash: source <(sharplens completion bash)   zsh: source <(sharplens completion zsh)\n" +
        "pwsh: sharplens completion pwsh | Out-String | Invoke-Expression";
    public override IReadOnlyList<Symbol> Symbols { get; } = [Opt.Args("SHELL", "bash, zsh or pwsh")];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Positionals.Count != 1) throw new CliUsageException("give one shell: bash, zsh or pwsh.");
        string shell = args.Positionals[0];
        if (!Scripts.TryGetValue(shell, out var script))
            throw new CliUsageException($"unknown shell '{shell}'. Allowed: bash, zsh, pwsh." + NameSuggestions.DidYouMean(shell, Scripts.Keys));
        stdout.WriteLine(script);
        return Task.FromResult(0);
    }
}
