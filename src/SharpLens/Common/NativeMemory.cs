using System.Runtime.InteropServices;

namespace SharpLens;

/// <summary>
/// Native allocator settings for tensor memory. libtorch allocates CPU tensors with glibc's malloc, which serves blocks
/// above a dynamic threshold (≤ 32 MB) with mmap and unmaps them on free, so every forward pass faults its activations
/// in again; first-touch page faults run at ~0.3 GB/s on small VMs and then dominate forward, cache and load times.
/// Raising the mmap and trim thresholds keeps freed tensor memory in the process for reuse. Linux/glibc only; set
/// <c>SHARPLENS_MALLOC_TUNING=0</c> to leave the allocator alone.
/// </summary>
internal static partial class NativeMemory
{
    private const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;
    private const int OneGiB = 1 << 30;
    private static int s_configured;

    /// <summary>Applies the settings once per process (cheap to call again).</summary>
    public static void Configure()
    {
        if (Interlocked.Exchange(ref s_configured, 1) == 1) return;
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("SHARPLENS_MALLOC_TUNING") == "0") return;
        try
        {
            // Blocks up to 1 GiB come from the heap (reused after free) instead of fresh mmaps; up to 1 GiB of free
            // heap stays mapped instead of being returned after every large free.
            Mallopt(M_MMAP_THRESHOLD, OneGiB);
            Mallopt(M_TRIM_THRESHOLD, OneGiB);
            // libtorch backs large CPU tensors with transparent huge pages when this is set before its first
            // allocation: 512× fewer page faults when weights and activations are first touched. A user's value wins.
            SetEnv("THP_MEM_ALLOC_ENABLE", "1", 0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc: nothing to tune
        }
    }

    /// <summary>Returns free heap memory to the OS (after loading, whose temporaries are not needed again).</summary>
    public static void Trim()
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref s_configured) == 0) return;
        try { MallocTrim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    /// <summary>Runs when SharpLens is loaded, normally before the first tensor exists.</summary>
#pragma warning disable CA2255 // deliberate: allocator settings only take effect before libtorch's first allocation
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnLoad() => Configure();

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int param, int value);

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
