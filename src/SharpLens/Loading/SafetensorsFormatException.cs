namespace SharpLens.Loading;

/// <summary>
/// A weights file (safetensors, or a torch.save checkpoint) is malformed. The message starts with the file path
/// and says what is wrong, naming the tensor involved.
/// </summary>
public sealed class SafetensorsFormatException : SharpLensException
{
    /// <summary>Creates the exception; <paramref name="message"/> should already start with the file path.</summary>
    public SafetensorsFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with the low-level cause (e.g. the JSON parser's error).</summary>
    public SafetensorsFormatException(string message, Exception inner) : base(message, inner) { }
}
