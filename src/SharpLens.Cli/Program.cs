using System.Runtime.InteropServices;
using SharpLens;
using SharpLens.Cli;

// Ctrl+C (or SIGTERM): commands that watch the token (download) stop on their own and report; the model commands run
// native code that cannot stop midway, so after a short grace period the process ends with 130 (143 for SIGTERM)
// after removing the temporary files of unfinished writes: no output file is ever left half-written.
using var interrupted = new CancellationTokenSource();
PosixSignalRegistration Register(PosixSignal signal, int exitCode) => PosixSignalRegistration.Create(signal, context =>
{
    context.Cancel = true;
    if (interrupted.IsCancellationRequested) return;
    interrupted.Cancel();
    _ = Task.Run(async () =>
    {
        await Task.Delay(TimeSpan.FromSeconds(1));
        AtomicFile.AbortAll();
        Console.Error.WriteLine("interrupted.");
        Environment.Exit(exitCode);
    });
});
using var sigint = Register(PosixSignal.SIGINT, CliApp.InterruptedExitCode);
using var sigterm = Register(PosixSignal.SIGTERM, 143);

return await CliApp.RunAsync(args, Console.Out, Console.Error, interrupted.Token);
