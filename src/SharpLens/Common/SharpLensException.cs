namespace SharpLens;

/// <summary>
/// Base class of every error SharpLens raises on bad input: the message says what was wrong, what is allowed
/// and, where there is one, the closest valid name.
/// </summary>
public class SharpLensException : Exception
{
    /// <summary>Creates the exception with a specific, user-facing message.</summary>
    public SharpLensException(string message) : base(message) { }

    /// <summary>Creates the exception with a specific message and the low-level cause.</summary>
    public SharpLensException(string message, Exception inner) : base(message, inner) { }
}
